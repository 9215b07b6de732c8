/// The version of this build of Tailgate: printed by `tailgate --version`, on the start-up line,
/// in `GET /api/stats` (`version`) and in the `User-Agent` of `tailgate run` and `tailgate pipe`
/// (`tailgate/<version>`). Raised by hand with each release tag (`v<version>`).
enum TailgateVersion {
    static let current = "0.9.0"

    /// What `tailgate run` and `tailgate pipe` send as `User-Agent`.
    static var userAgent: String { "tailgate/\(current)" }
}
