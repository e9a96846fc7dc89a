import Testing

@testable import TallyDiscovery

@Suite("Display URL scheme")
struct SchemeTests {
    @Test func anApplianceServingTLSIsOpenedOverHTTPS() {
        let tls = DiscoveredAppliance(
            name: "Hall", host: "tally.local", address: "192.168.4.1", port: 443, txt: ["path": "/display", "scheme": "https"])
        #expect(tls.url == "https://192.168.4.1:443/display")
        let v6 = DiscoveredAppliance(name: "v6", host: "h", address: "fe80::1", port: 8443, txt: ["scheme": "https"])
        #expect(v6.url == "https://[fe80::1]:8443/")
        // Only https changes anything; an odd scheme cannot send the kiosk elsewhere.
        for odd in ["javascript", "file", "HTTPS ", "ftp"] {
            let x = DiscoveredAppliance(name: "x", host: "h", address: "192.168.4.1", port: 80, txt: ["scheme": odd])
            #expect(x.url == "http://192.168.4.1:80/", "\(odd)")
        }
    }
}
