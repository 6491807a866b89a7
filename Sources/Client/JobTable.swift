import Foundation
import KilnProtocol

/// Text renderings of a JobView: the live table of `kiln watch` on a terminal,
/// and one plain line per block state change otherwise. Pure (time passed in).
public enum JobTable {
    static let barWidth = 10

    /// The summary line: job id, state, blocks done, elapsed, ETA.
    public static func summary(_ view: JobView, nowUnixMs: Int64) -> String {
        var parts = [
            "job \(view.jobID)", view.state.label,
            "blocks \(view.blocksDone)/\(view.rows.count)",
            "elapsed \(duration(view.jobElapsedMs(nowUnixMs: nowUnixMs)))",
        ]
        if let eta = view.etaMs(nowUnixMs: nowUnixMs) { parts.append("eta \(duration(eta))") }
        if let e = view.error { parts.append("error: \(errorText(e))") }
        return parts.joined(separator: "  ")
    }

    /// Summary, header and one row per block.
    public static func lines(_ view: JobView, nowUnixMs: Int64) -> [String] {
        var out = [summary(view, nowUnixMs: nowUnixMs)]
        out.append(
            pad("block", 5, right: true) + "  " + pad("stage", 14) + "  " + pad("statistics", barWidth + 10)
                + "  " + pad("reconstruction", barWidth + 10) + "  " + pad("error", 9) + "  "
                + pad("worker", 16) + "  " + pad("elapsed", 8, right: true) + "  " + pad("eta", 8, right: true))
        for row in view.rows { out.append(tableRow(row, nowUnixMs: nowUnixMs)) }
        return out
    }

    public static func tableRow(_ row: BlockRow, nowUnixMs: Int64) -> String {
        pad("\(row.block)", 5, right: true) + "  " + pad(row.stage.rawValue, 14) + "  "
            + pad(bar(row.statistics), barWidth + 10) + "  " + pad(bar(row.reconstruction), barWidth + 10) + "  "
            + pad(row.error.map { String(format: "%.3e", $0) } ?? "-", 9) + "  "
            + pad(workers(row.workers), 16) + "  "
            + pad(row.elapsedMs(nowUnixMs: nowUnixMs).map(duration) ?? "-", 8, right: true) + "  "
            + pad(row.etaMs(nowUnixMs: nowUnixMs).map(duration) ?? "-", 8, right: true)
    }

    /// One line for a block that changed state (non-terminal output).
    public static func plainLine(_ row: BlockRow, jobID: String, nowUnixMs: Int64) -> String {
        var parts = [
            "job \(jobID) block \(row.block): \(row.stage.rawValue)",
            "statistics \(count(row.statistics))", "reconstruction \(count(row.reconstruction))",
        ]
        if row.propagation.isKnown { parts.append("propagation \(count(row.propagation))") }
        if let e = row.error { parts.append(String(format: "error %.3e", e)) }
        if !row.workers.isEmpty { parts.append("worker \(row.workers.joined(separator: ","))") }
        if let el = row.elapsedMs(nowUnixMs: nowUnixMs) { parts.append("elapsed \(duration(el))") }
        if let eta = row.etaMs(nowUnixMs: nowUnixMs) { parts.append("eta \(duration(eta))") }
        return parts.joined(separator: "  ")
    }

    /// The plain lines for the step from `previous` to `view`: job state changes and block stage changes.
    public static func plainLines(_ view: JobView, previous: JobView?, nowUnixMs: Int64) -> [String] {
        var out: [String] = []
        if previous?.state != view.state { out.append(summary(view, nowUnixMs: nowUnixMs)) }
        for row in view.stageChanges(from: previous) where previous != nil || row.stage != .waiting {
            out.append(plainLine(row, jobID: view.jobID, nowUnixMs: nowUnixMs))
        }
        return out
    }

    public static func errorText(_ e: Kiln_V1_Error) -> String {
        let text = e.message.isEmpty ? "\(e.code)" : e.message
        return e.field.isEmpty ? text : "\(text) (field \(e.field))"
    }

    // MARK: formatting

    static func count(_ p: PhaseCount) -> String { p.isKnown ? "\(p.done)/\(p.total)" : "-" }

    static func bar(_ p: PhaseCount) -> String {
        guard p.isKnown else { return "-" }
        let filled = Int((p.fraction * Double(barWidth)).rounded(.down))
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: barWidth - filled) + "] "
            + count(p)
    }

    static func workers(_ ids: [String]) -> String {
        guard let first = ids.first else { return "-" }
        return ids.count == 1 ? first : "\(first) +\(ids.count - 1)"
    }

    /// 950ms, 12.3s, 4m05s, 2h03m.
    public static func duration(_ ms: Int64) -> String {
        let ms = max(ms, 0)
        if ms < 1000 { return "\(ms)ms" }
        if ms < 60_000 { return String(format: "%.1fs", Double(ms) / 1000) }
        let s = ms / 1000
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60)
    }

    /// Pads (or cuts, with an ellipsis) to `width` characters.
    static func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
        if s.count > width { return String(s.prefix(max(width - 1, 0))) + "…" }
        let fill = String(repeating: " ", count: width - s.count)
        return right ? fill + s : s + fill
    }
}
