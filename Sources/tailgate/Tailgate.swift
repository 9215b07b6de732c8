import ArgumentParser

@main
struct Tailgate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tailgate",
        abstract: "Live logs of many workers in the browser, over one port.",
        discussion: """
            Browsers open ws://HOST:PORT/ws/workers/<id>; the gateway replays that worker's ring buffer, then \
            streams live records. The dashboard is at http://HOST:PORT/.
            """,
        version: TailgateVersion.current,
        subcommands: [ServeCommand.self, TokenCommand.self, RunCommand.self, PipeCommand.self],
        defaultSubcommand: ServeCommand.self
    )

    /// Parses and runs with `serve`'s settings from TAILGATE_<FLAG> and --config merged in first.
    static func main() async {
        await ConfigurationSources.main()
    }
}
