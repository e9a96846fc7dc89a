import Testing

@testable import TallyServer

@Suite("Venue Wi-Fi")
struct VenueWiFiTests {
    @Test func theQRCodeTextIsTheStandardOne() throws {
        #expect(try VenueWiFi(ssid: "Tally", passphrase: "choose-a-long-one").joinText == "WIFI:T:WPA;S:Tally;P:choose-a-long-one;;")
        #expect(try VenueWiFi(ssid: "Tally", passphrase: nil).joinText == "WIFI:T:nopass;S:Tally;;")
    }

    @Test func delimitersAreEscaped() throws {
        #expect(VenueWiFi.escape(#"a\b;c,d:e"f"#) == #"a\\b\;c\,d\:e\"f"#)
        #expect(VenueWiFi.escape(#"\;"#) == #"\\\;"#, "the backslash is escaped first, not twice")
        #expect(VenueWiFi.escape("Café Ünïcode 🎉") == "Café Ünïcode 🎉")
        #expect(VenueWiFi.escape("") == "")
        let wifi = try VenueWiFi(ssid: #"Hall "A"; 2:1"#, passphrase: #"p\ss;w,rd:"x""#)
        #expect(wifi.joinText == #"WIFI:T:WPA;S:Hall \"A\"\; 2\:1;P:p\\ss\;w\,rd\:\"x\";;"#)
    }

    /// What the screen shows must be joinable: 802.11 and WPA2-PSK limits.
    @Test func settingsOutsideWhatAPhoneCanJoinAreRefused() {
        #expect(throws: VenueWiFi.Invalid.self) { try VenueWiFi(ssid: "", passphrase: nil) }
        #expect(throws: VenueWiFi.Invalid.self) { try VenueWiFi(ssid: String(repeating: "x", count: 33), passphrase: nil) }
        #expect(throws: VenueWiFi.Invalid.self) { try VenueWiFi(ssid: "a\nb", passphrase: nil) }
        #expect(throws: VenueWiFi.Invalid.self) { try VenueWiFi(ssid: "Tally", passphrase: "short") }
        #expect(throws: VenueWiFi.Invalid.self) { try VenueWiFi(ssid: "Tally", passphrase: String(repeating: "x", count: 64)) }
        #expect(throws: VenueWiFi.Invalid.self) { try VenueWiFi(ssid: "Tally", passphrase: "pässwörd-long") }
        #expect(throws: Never.self) {
            try VenueWiFi(ssid: String(repeating: "é", count: 16), passphrase: String(repeating: "x", count: 63))
        }
        #expect(throws: Never.self) { try VenueWiFi(ssid: "Tally", passphrase: String(repeating: "aF09", count: 16)) }
        do throws(VenueWiFi.Invalid) {
            _ = try VenueWiFi(ssid: "Tally", passphrase: "short")
        } catch {
            #expect(error.setting == "wifi-passphrase")
        }
    }
}
