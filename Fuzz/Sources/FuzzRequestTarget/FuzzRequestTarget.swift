import FuzzSupport
import NIOHTTP1
@testable import TailgateServer

/// libFuzzer target: a request target as it comes off the wire — absolute form, base path, query,
/// percent-decoding, route — and the `Host` and `Origin` checks. Refusals are fine; traps are not.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestTarget(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let parts = text.split(separator: "\n", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
    let uri = parts[0]
    var headers = HTTPHeaders([("Host", parts.count > 1 ? parts[1] : "127.0.0.1")])
    if parts.count > 2 { headers.add(name: "Origin", value: parts[2]) }
    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: headers)
    for basePath in ["", "/tailgate"] {
        if let request = try? Request(head: head, peer: "127.0.0.1", basePath: basePath) {
            _ = try? request.target.unsignedValue("since")
            _ = request.target.value("tail")
            try? HostPolicy(allowed: ["logs.example"], listenHost: "127.0.0.1").check(request, trustedProxies: [])
            try? OriginPolicy(allowed: []).check(request.headers, host: request.client(trustedProxies: []).host)
            if case .file(let path) = request.route { _ = RequestTarget.percentDecode(path) }
        }
    }
    _ = HostPolicy.isAddressLiteral(HostPolicy.name(of: uri))
    return 0
}

@_cdecl("FuzzRequestTarget_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzRequestTarget)
}
