import Testing

@testable import TallyServer

@Suite("Trusted proxies")
struct TrustedProxiesTests {
    @Test func parsesIPv4AndIPv6BlocksAndSingleHosts() throws {
        let proxies = try TrustedProxies(parsing: "127.0.0.1, 10.0.0.0/8 192.168.4.0/24,::1,fd00::/8")
        #expect(proxies.description == "127.0.0.1/32, 10.0.0.0/8, 192.168.4.0/24, ::1/128, fd00::/8")
        #expect(try TrustedProxies(parsing: "").isEmpty)
        #expect(try TrustedProxies(parsing: " , ").isEmpty)
    }

    @Test func refusesAnythingThatIsNotExactlyACIDR() {
        let bad: [(String, String)] = [
            ("10.0.0.1/8", "did you mean 10.0.0.0/8?"),
            ("fd00::1/8", "did you mean fd00::/8?"),
            ("10.0.0.0/33", "from 0 to 32"),
            ("fd00::/129", "from 0 to 128"),
            ("10.0.0.0/", "from 0 to 32"),
            ("10.0.0.0/+8", "from 0 to 32"),
            ("10.0.0.0/-1", "from 0 to 32"),
            ("10.0.0.0/8/8", "from 0 to 32"),
            ("10.0.0", "not an IPv4 or IPv6 address"),
            ("10.0.0.256", "not an IPv4 or IPv6 address"),
            ("010.0.0.1", "not an IPv4 or IPv6 address"),
            ("1.2.3.4.5", "not an IPv4 or IPv6 address"),
            ("localhost", "not an IPv4 or IPv6 address"),
            ("fe80::1%eth0", "not an IPv4 or IPv6 address"),
            ("fd00:::1", "not an IPv4 or IPv6 address"),
            ("[::1]", "not an IPv4 or IPv6 address"),
            ("１.2.3.4", "not an IPv4 or IPv6 address"),
        ]
        for (text, why) in bad {
            do {
                _ = try TrustedProxies(parsing: "127.0.0.1, \(text)")
                Issue.record("\(text) was accepted")
            } catch {
                #expect("\(error)".contains(text), "\(error)")
                #expect("\(error)".contains(why), "\(text): \(error)")
            }
        }
    }

    @Test func matchesAddressesInsideTheBlocksOnly() throws {
        let proxies = try TrustedProxies(parsing: "10.1.0.0/16, 172.16.0.0/12, 2001:db8:1::/48, 192.168.1.7")
        for inside in [
            "10.1.0.0", "10.1.255.255", "172.16.0.1", "172.31.255.255", "2001:db8:1::1", "2001:db8:1:ffff::9", "192.168.1.7",
            "::ffff:10.1.2.3",
        ] {
            #expect(proxies.contains(inside), "\(inside)")
        }
        for outside in ["10.2.0.0", "10.0.255.255", "172.32.0.0", "172.15.255.255", "2001:db8:2::1", "192.168.1.8", "garbage", "", "::1"] {
            #expect(!proxies.contains(outside), "\(outside)")
        }
        #expect(try TrustedProxies(parsing: "0.0.0.0/0").contains("203.0.113.9"))
        #expect(try !TrustedProxies(parsing: "0.0.0.0/0").contains("2001:db8::1"))
        #expect(try TrustedProxies(parsing: "::/0").contains("2001:db8::1"))
        #expect(try !TrustedProxies().contains("127.0.0.1"))
    }

    let proxy = try! TrustedProxies(parsing: "127.0.0.1, 10.0.0.0/8, ::1")

    @Test func anUntrustedPeerCannotNameAClient() {
        #expect(proxy.client(peer: "192.168.1.20", forwardedFor: ["203.0.113.9"], forwarded: []) == "192.168.1.20")
        #expect(proxy.client(peer: "192.168.1.20", forwardedFor: [], forwarded: ["for=203.0.113.9"]) == "192.168.1.20")
        #expect(TrustedProxies().client(peer: "127.0.0.1", forwardedFor: ["203.0.113.9"], forwarded: []) == "127.0.0.1")
    }

    @Test func theRightMostAddressThatIsNotATrustedProxyIsTheClient() {
        // The client wrote the left part itself; the proxy appended the address it saw.
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: ["6.6.6.6, 192.168.1.20"], forwarded: []) == "192.168.1.20")
        // A chain of trusted proxies is walked through.
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: ["192.168.1.20, 10.0.0.2", "10.0.0.3"], forwarded: []) == "192.168.1.20")
        // Only trusted hops: the left-most is the client.
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: ["10.0.0.9, 10.0.0.2"], forwarded: []) == "10.0.0.9")
        // Ports and brackets as some proxies write them; canonical text out.
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: ["192.168.1.20:51234"], forwarded: []) == "192.168.1.20")
        #expect(proxy.client(peer: "::1", forwardedFor: ["[2001:DB8:0::1]:443"], forwarded: []) == "2001:db8::1")
        #expect(proxy.client(peer: "::1", forwardedFor: ["2001:db8::1"], forwarded: []) == "2001:db8::1")
        #expect(proxy.client(peer: "::ffff:127.0.0.1", forwardedFor: ["::ffff:192.168.1.20"], forwarded: []) == "192.168.1.20")
    }

    @Test func aMalformedHopStopsAtTheLastAddressWeCanVouchFor() {
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: ["192.168.1.20, garbage"], forwarded: []) == "127.0.0.1")
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: ["192.168.1.20, 10.0.0.2, unknown, 10.0.0.3"], forwarded: []) == "10.0.0.3")
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: [""], forwarded: []) == "127.0.0.1")
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: ["1.2.3.4:x"], forwarded: []) == "127.0.0.1")
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: ["[::1"], forwarded: []) == "127.0.0.1")
    }

    @Test func forwardedForIsReadAsRFC7239Says() {
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: [], forwarded: ["for=192.0.2.60;proto=http;by=203.0.113.43"]) == "192.0.2.60")
        #expect(
            proxy.client(peer: "127.0.0.1", forwardedFor: [], forwarded: [#"for=6.6.6.6, For="[2001:db8:cafe::17]:4711""#])
                == "2001:db8:cafe::17")
        #expect(
            proxy.client(peer: "127.0.0.1", forwardedFor: [], forwarded: ["for=6.6.6.6", "for=192.0.2.60, for=10.0.0.1"]) == "192.0.2.60")
        // Obfuscated or missing `for`: nobody we can vouch for beyond the proxy.
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: [], forwarded: ["for=_hidden"]) == "127.0.0.1")
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: [], forwarded: ["for=6.6.6.6, proto=https"]) == "127.0.0.1")
        #expect(TrustedProxies.forElements(#"for="a,b";by=x, for=c"#) == ["a,b", "c"])
    }

    @Test func xForwardedForWinsWhenBothArePresent() {
        #expect(proxy.client(peer: "127.0.0.1", forwardedFor: ["192.168.1.20"], forwarded: ["for=6.6.6.6"]) == "192.168.1.20")
    }
}

@Suite("HTTPS redirect")
struct HTTPSRedirectTests {
    @Test func keepsHostPathAndQueryAndNamesTheTLSPort() {
        #expect(
            HTTPSRedirect.location(authority: "tally.local:8080", path: "/j/K7QX2M", query: "a=1&b=2", tlsPort: 8443, publicURL: nil)
                == "https://tally.local:8443/j/K7QX2M?a=1&b=2")
        #expect(
            HTTPSRedirect.location(authority: "192.168.4.1", path: "/", query: nil, tlsPort: 443, publicURL: nil) == "https://192.168.4.1/")
        #expect(
            HTTPSRedirect.location(authority: "[fd00::1]:80", path: "/display", query: "", tlsPort: 443, publicURL: nil)
                == "https://[fd00::1]/display")
        #expect(
            HTTPSRedirect.location(authority: "x", path: "/s/abc", query: nil, tlsPort: 8443, publicURL: "https://tally.example.org/")
                == "https://tally.example.org/s/abc")
    }

    @Test func refusesHostsThatAreNotHosts() {
        for bad in ["", ":80", "evil.com/x", "a b", "[fd00::1", "[zz]", "user@host"] {
            #expect(HTTPSRedirect.location(authority: bad, path: "/", query: nil, tlsPort: 443, publicURL: nil) == nil, "\(bad)")
        }
        #expect(HTTPSRedirect.location(authority: nil, path: "/", query: nil, tlsPort: 443, publicURL: nil) == nil)
    }
}
