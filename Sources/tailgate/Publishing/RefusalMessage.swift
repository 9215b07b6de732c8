import NIOHTTP1
import TailgateCore

/// The words for a 4xx answer to a publisher — from the gateway (`{"error":{"code","message"}}`) or
/// from a proxy before it (an HTML page) — with what to do about it.
enum RefusalMessage {
    /// "the gateway URL refused to publish into worker 'ID' (401 token_expired): the access token has
    /// expired; make a new one: tailgate token --scope publish --worker ID".
    static func describe(_ answer: HTTPAnswer, gateway: GatewayAddress, worker: WorkerID) -> String {
        let error = (try? JSONParser.parse(answer.text))?["error"]
        let code = error?["code"]?.stringValue
        var reason: String
        if let message = error?["message"]?.stringValue {
            reason = message
        } else {
            // Not the gateway's own answer: a proxy's (nginx's error pages are HTML).
            let phrase = HTTPResponseStatus(statusCode: answer.status).reasonPhrase
            reason = "\(phrase) (an answer of a proxy, not of the gateway)"
            if answer.status == 401, let challenge = answer.header("WWW-Authenticate"), challenge.lowercased().hasPrefix("basic") {
                reason += ": it asks for a password (\(challenge.prefix(80))); pass it with --header 'Authorization: Basic …'"
            } else if answer.status == 404 {
                reason += ": is the path prefix of --gateway right?"
            }
        }
        let status = code.map { "\(answer.status) \($0)" } ?? String(answer.status)
        let make = "tailgate token --scope publish --worker \(worker)"
        switch code {
        case "auth_required":
            reason += "; give a token of publish scope with --token, --token-file or TAILGATE_TOKEN (\(make))"
        case "token_expired":
            reason += "; make a new one (\(make))"
        case "token_invalid":
            reason += " (not signed with a key of the gateway's --auth-secret-file, or damaged)"
        case "scope_not_allowed", "worker_not_allowed":
            reason += "; publishing needs a token of publish scope covering worker '\(worker)' (\(make))"
        default:
            break
        }
        return "the gateway \(gateway) refused to publish into worker '\(worker)' (\(status)): \(reason)"
    }
}
