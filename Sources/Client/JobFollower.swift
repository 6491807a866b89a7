import Foundation
import KilnProtocol

/// Follows one job to its end: a ProgressSubscriber feeding a JobView.
public final class JobFollower {
    public let subscriber: ProgressSubscriber
    public let jobID: String
    public private(set) var view: JobView

    public init(subscriber: ProgressSubscriber, jobID: String) {
        self.subscriber = subscriber
        self.jobID = jobID
        view = JobView(jobID: jobID)
    }

    /// Applies feed events to the view; true if it changed.
    @discardableResult
    public func apply(_ events: [ProgressSubscriber.Event]) -> Bool {
        let before = view
        for event in events {
            switch event {
            case .snapshot(let s):
                if let status = s.jobs.first(where: { $0.jobID == jobID }) { view.apply(status) }
            case .update(let u):
                view.apply(u)
            }
        }
        return view != before
    }

    /// Takes the snapshot, then streams until the job is finished. `onChange`
    /// gets the new view and the one before it whenever it changes, and also
    /// every `tickMs` with `previous` equal to the view (for clocks on screen).
    /// Returns the final view.
    @discardableResult
    public func run(
        tickMs: Int = 500, onChange: (_ view: JobView, _ previous: JobView?) throws -> Void
    ) throws -> JobView {
        apply(try subscriber.start())
        try onChange(view, nil)
        while !view.isFinished {
            let before = view
            if apply(try subscriber.next(timeoutMs: tickMs)) {
                try onChange(view, before)
            } else {
                try onChange(view, view)
            }
        }
        return view
    }
}
