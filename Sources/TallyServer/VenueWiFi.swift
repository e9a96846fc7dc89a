import Foundation
import Hummingbird
import NIOCore

/// The Wi-Fi network the room joins (the standalone access point, `wifi-ssid` /
/// `wifi-passphrase`), shown on the display's idle screen as a QR code phones join by scanning.
///
/// Who may read it: anyone. The passphrase is printed on the room's screen anyway, and whoever
/// can ask the appliance is already on a network it serves; a secret the projector shows to
/// the room is not protected by refusing it to the same room's phones.
public struct VenueWiFi: Sendable, Equatable {
    public let ssid: String
    /// nil: an open network (no passphrase).
    public let passphrase: String?

    /// Why a setting was refused, and which one.
    public struct Invalid: Error, Equatable {
        public let setting: String
        public let reason: String
    }

    /// The rules of 802.11 and WPA2-PSK, so that what the screen shows can actually be joined:
    /// an SSID of 1–32 bytes; a passphrase of 8–63 printable ASCII characters, or 64 hex digits
    /// (a raw pre-shared key). No control characters anywhere: they would corrupt the screen.
    public init(ssid: String, passphrase: String?) throws(Invalid) {
        guard (1...32).contains(ssid.utf8.count) else {
            throw Invalid(setting: "wifi-ssid", reason: "must be 1 to 32 bytes (an 802.11 network name), got \(ssid.utf8.count)")
        }
        guard !ssid.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw Invalid(setting: "wifi-ssid", reason: "must not contain control characters")
        }
        if let passphrase {
            let isKey = passphrase.utf8.count == 64 && passphrase.utf8.allSatisfy { $0.isHexDigit }
            let isPhrase = (8...63).contains(passphrase.utf8.count) && passphrase.utf8.allSatisfy { (0x20...0x7E).contains($0) }
            guard isKey || isPhrase else {
                throw Invalid(
                    setting: "wifi-passphrase",
                    reason: "a WPA2 passphrase is 8 to 63 printable ASCII characters (or 64 hex digits), as in hostapd.conf")
            }
        }
        self.ssid = ssid
        self.passphrase = passphrase
    }

    /// What the QR code says: the de-facto standard phones' cameras understand
    /// (`WIFI:T:WPA;S:<ssid>;P:<passphrase>;;`, `T:nopass` for an open network).
    public var joinText: String {
        guard let passphrase else { return "WIFI:T:nopass;S:\(Self.escape(ssid));;" }
        return "WIFI:T:WPA;S:\(Self.escape(ssid));P:\(Self.escape(passphrase));;"
    }

    /// `\`, `;`, `,`, `:` and `"` are escaped with a backslash: they delimit the fields.
    static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            if "\\;,:\"".contains(character) { out.append("\\") }
            out.append(character)
        }
        return out
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(self)
    }
}

/// `GET /api/v1/wifi` and `/api/v1/wifi.svg`: open to anyone (see `VenueWiFi`); 404 when no
/// network is configured, so the display shows only the join code.
struct WiFiController: Sendable {
    let wifi: VenueWiFi?

    struct Body: Encodable {
        let ssid: String
        /// "WPA" or "nopass", as in the QR code.
        let security: String
        let passphrase: String?
        /// The QR code's text, for clients that draw their own.
        let text: String
        let qr: String
    }

    /// The room's Wi-Fi is on the room's screen anyway: open to anyone.
    func addRoutes(to api: APIRoutes) {
        let anyone = api.role(.anyone)
        anyone.get("wifi") { _, _ in
            let wifi = try configured()
            return json(
                Body(
                    ssid: wifi.ssid, security: wifi.passphrase == nil ? "nopass" : "WPA", passphrase: wifi.passphrase,
                    text: wifi.joinText, qr: "/api/v1/wifi.svg"))
        }
        anyone.get("wifi.svg") { _, _ in
            guard let svg = QRCode.svg(for: try configured().joinText) else {
                throw Problem(.internalServerError, "could not draw the Wi-Fi QR code")
            }
            return Response(
                status: .ok, headers: [.contentType: "image/svg+xml", .cacheControl: "no-cache"],
                body: .init(byteBuffer: ByteBuffer(string: svg)))
        }
    }

    private func configured() throws -> VenueWiFi {
        guard let wifi else { throw Problem(.notFound, "no Wi-Fi network is configured (wifi-ssid in tally.conf)") }
        return wifi
    }
}
