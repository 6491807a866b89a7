import ArgumentParser
import Client
import Foundation
import KilnProtocol

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow a job block by block until it ends (exit status 1 if it failed or was cancelled).",
        discussion: """
            On a terminal: a table redrawn in place, one row per block with statistics and \
            reconstruction progress, error, worker, elapsed and ETA. Otherwise: one line per \
            block state change. A watcher that starts late first gets the whole state \
            (snapshot), then the live feed.
            """)

    @Argument(help: "Job id (as `kiln submit` printed it).")
    var job: String

    @OptionGroup var connection: CoordinatorOptions

    @Option(help: ArgumentHelp("Progress feed endpoint (default: the coordinator's port + 1).", valueName: "endpoint"))
    var publish: String?

    @Flag(help: "Plain lines even on a terminal.")
    var plain = false

    @Flag(help: "Print the final status as JSON on stdout (progress goes to stderr).")
    var json = false

    func run() throws {
        try runReportingErrors {
            let client = try connection.makeClient()
            try followJob(job, client: client, publish: publish, plain: plain, json: json)
        }
    }
}

/// Follows a job to its end on stdout (stderr with --json), then reports how it
/// ended; throws ExitCode(1) unless it succeeded. Shared by watch and submit --wait.
func followJob(_ jobID: String, client: CoordinatorClient, publish: String?, plain: Bool, json: Bool) throws {
    let feed = try publish ?? Endpoints.publish(forCoordinator: client.endpoint)
    let subscriber = try ProgressSubscriber(client: client, publishEndpoint: feed, jobID: jobID)
    let out = json ? FileHandle.standardError : FileHandle.standardOutput
    let live = !plain && isatty(json ? STDERR_FILENO : STDOUT_FILENO) != 0
    let display: WatchDisplay = live ? LiveTable(out: out) : PlainLines(out: out)
    let view = try JobFollower(subscriber: subscriber, jobID: jobID).run { view, previous in
        display.show(view, previous: previous, nowUnixMs: WallClock.nowUnixMs)
    }
    display.finish(view, nowUnixMs: WallClock.nowUnixMs)
    if json { try printJSON(view.jsonObject(nowUnixMs: WallClock.nowUnixMs)) }
    switch view.state {
    case .succeeded:
        if !json {
            print(
                "job \(jobID) succeeded in \(JobTable.duration(view.jobElapsedMs(nowUnixMs: WallClock.nowUnixMs))): \(view.spec.outputPath)"
            )
        }
    case .cancelled:
        FileHandle.standardError.write(Data("kiln: job \(jobID) was cancelled\n".utf8))
        throw ExitCode(1)
    default:
        let why = view.error.map(JobTable.errorText) ?? "no error reported"
        FileHandle.standardError.write(Data("kiln: job \(jobID) failed: \(why)\n".utf8))
        throw ExitCode(1)
    }
}

protocol WatchDisplay {
    func show(_ view: JobView, previous: JobView?, nowUnixMs: Int64)
    func finish(_ view: JobView, nowUnixMs: Int64)
}

/// One line per job state change and per block state change (logs, pipes, CI).
final class PlainLines: WatchDisplay {
    let out: FileHandle
    init(out: FileHandle) { self.out = out }

    func show(_ view: JobView, previous: JobView?, nowUnixMs: Int64) {
        guard previous != view else { return }  // clock ticks change nothing here
        let lines = JobTable.plainLines(view, previous: previous, nowUnixMs: nowUnixMs)
        if !lines.isEmpty { out.write(Data((lines.joined(separator: "\n") + "\n").utf8)) }
    }

    func finish(_ view: JobView, nowUnixMs: Int64) {}
}

/// The table redrawn in place with ANSI escapes, cut to the terminal's size
/// (a table taller than the screen could not be redrawn in place).
final class LiveTable: WatchDisplay {
    let out: FileHandle
    private var drawnLines = 0
    private var lastDrawMs: Int64 = 0
    static let minRedrawMs: Int64 = 100

    init(out: FileHandle) { self.out = out }

    func show(_ view: JobView, previous: JobView?, nowUnixMs: Int64) {
        // Bursts of updates redraw at most every 100 ms; the end is always drawn.
        if nowUnixMs - lastDrawMs < Self.minRedrawMs && !view.isFinished && previous != nil { return }
        lastDrawMs = nowUnixMs
        draw(view, nowUnixMs: nowUnixMs)
    }

    func finish(_ view: JobView, nowUnixMs: Int64) { draw(view, nowUnixMs: nowUnixMs) }

    private func draw(_ view: JobView, nowUnixMs: Int64) {
        let (width, height) = terminalSize()
        var lines = JobTable.lines(view, nowUnixMs: nowUnixMs)
        let room = max(height - 1, 4)
        if lines.count > room {
            // Keep summary and header; show the active blocks first, then the next waiting ones.
            let rows = view.rows
            let shown =
                rows.filter { $0.stage != .done && $0.stage != .waiting }
                + rows.filter { $0.stage == .waiting }
            let keep = Set(shown.prefix(room - 3).map(\.block))
            let done = rows.filter { $0.stage == .done }.count
            lines =
                Array(lines.prefix(2))
                + rows.filter { keep.contains($0.block) }.map {
                    JobTable.tableRow($0, nowUnixMs: nowUnixMs)
                } + ["(\(done) blocks done, \(rows.count - keep.count - done) waiting not shown)"]
        }
        var text = drawnLines > 0 ? "\u{1B}[\(drawnLines)F" : ""
        for line in lines { text += String(line.prefix(max(width - 1, 20))) + "\u{1B}[K\n" }
        text += "\u{1B}[J"
        drawnLines = lines.count
        out.write(Data(text.utf8))
    }

    private func terminalSize() -> (width: Int, height: Int) {
        var ws = winsize()
        let fd = out == FileHandle.standardError ? STDERR_FILENO : STDOUT_FILENO
        if ioctl(fd, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0, ws.ws_row > 0 {
            return (Int(ws.ws_col), Int(ws.ws_row))
        }
        return (120, 40)
    }
}
