/// The prefix the gateway is published under (`--base-path`): stripped from requests that carry it.
enum BasePath {
    static func strip(_ uri: String, basePath: String) -> String {
        guard !basePath.isEmpty, uri.hasPrefix(basePath) else { return uri }
        let rest = uri.dropFirst(basePath.count)
        if rest.isEmpty { return "/" }
        guard rest.first == "/" || rest.first == "?" else { return uri }
        return rest.first == "?" ? "/" + rest : String(rest)
    }
}
