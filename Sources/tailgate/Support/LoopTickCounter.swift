import NIOPosix
import TailgateCore

/// The event loop group's metrics delegate: tells `LoopTicks` the end of every loop tick, so that the
/// bus's drains start as soon as the loop has polled its sockets (`LogBus(loopTicks:)`).
struct LoopTickCounter: NIOEventLoopMetricsDelegate {
    let ticks: LoopTicks

    func processedTick(info: NIOEventLoopTickInfo) {
        ticks.tickEnded(loop: info.eventLoopID)
    }
}
