import Testing
import TailgateServer

/// RFC 7692 §5–7: offers (as header lines) → the exact response, or no extension.
@Suite("permessage-deflate negotiation")
struct PerMessageDeflateNegotiationTests {
    @Test("offers give exactly this answer", arguments: [
        // The simplest offer; server_no_context_takeover is always added.
        (["permessage-deflate"], "permessage-deflate; server_no_context_takeover"),
        // What browsers send.
        (["permessage-deflate; client_max_window_bits"], "permessage-deflate; server_no_context_takeover"),
        (["permessage-deflate; client_max_window_bits=12"], "permessage-deflate; server_no_context_takeover; client_max_window_bits=12"),
        (["permessage-deflate; server_no_context_takeover"], "permessage-deflate; server_no_context_takeover"),
        (["permessage-deflate; client_no_context_takeover"], "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        (["permessage-deflate; server_max_window_bits=10"], "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"),
        (["permessage-deflate; server_max_window_bits=15"], "permessage-deflate; server_no_context_takeover; server_max_window_bits=15"),
        // Quoted values and odd spacing/case.
        (["permessage-deflate; server_max_window_bits=\"11\""], "permessage-deflate; server_no_context_takeover; server_max_window_bits=11"),
        (["  Permessage-Deflate ;  Client_Max_Window_Bits = 9 "], "permessage-deflate; server_no_context_takeover; client_max_window_bits=9"),
        // Several offers: the first acceptable one wins.
        (["permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover"],
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        (["permessage-deflate; unknown_param, permessage-deflate"], "permessage-deflate; server_no_context_takeover"),
        (["permessage-deflate; server_max_window_bits=16", "permessage-deflate; server_max_window_bits=9"],
         "permessage-deflate; server_no_context_takeover; server_max_window_bits=9"),
        // Other extensions are ignored.
        (["x-webkit-deflate-frame, permessage-deflate"], "permessage-deflate; server_no_context_takeover"),
        (["foo; bar=1", "permessage-deflate; client_max_window_bits=15"],
         "permessage-deflate; server_no_context_takeover; client_max_window_bits=15"),
    ])
    func answers(_ offers: [String], _ expected: String) {
        #expect(PerMessageDeflateNegotiation.negotiate(offers)?.responseHeader == expected)
    }

    @Test("offers that are declined (and nothing else acceptable) give no extension", arguments: [
        [String](),
        ["x-webkit-deflate-frame"],
        ["permessage-deflate; server_max_window_bits=8"],       // zlib cannot make 256-byte windows
        ["permessage-deflate; server_max_window_bits"],         // needs a value
        ["permessage-deflate; server_max_window_bits=7"],
        ["permessage-deflate; client_max_window_bits=16"],
        ["permessage-deflate; client_max_window_bits=abc"],
        ["permessage-deflate; server_no_context_takeover=1"],   // takes no value
        ["permessage-deflate; client_no_context_takeover; client_no_context_takeover"],  // repeated
        ["permessage-deflate; mystery"],
        ["permessage-deflate; server_max_window_bits=\"10"],    // unterminated quote
        ["permessage-deflate;;"],
        ["; permessage-deflate"],
    ])
    func declines(_ offers: [String]) {
        #expect(PerMessageDeflateNegotiation.negotiate(offers) == nil)
    }

    @Test func parametersAreRead() throws {
        let parameters = try #require(PerMessageDeflateNegotiation.negotiate(
            ["permessage-deflate; server_max_window_bits=10; client_max_window_bits=12; client_no_context_takeover"]))
        #expect(parameters.serverMaxWindowBits == 10)
        #expect(parameters.clientMaxWindowBits == 12)
        #expect(parameters.clientNoContextTakeover)
    }
}
