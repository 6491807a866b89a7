import KilnProtocol

// Small builders for protobuf values in the client tests.

func module(
    _ block: UInt32, _ phase: Kiln_V1_Phase, done: UInt32, total: UInt32, module name: String = "",
    worker: String = "", started: Int64 = 0, elapsed: UInt64 = 0, error: Double = 0
) -> Kiln_V1_ModuleProgress {
    var m = Kiln_V1_ModuleProgress()
    m.block = block
    m.module = name
    m.phase = phase
    m.done = done
    m.total = total
    m.workerID = worker
    m.startedUnixMs = started
    m.elapsedMs = elapsed
    m.error = error
    return m
}

func status(
    _ id: String, _ state: Kiln_V1_JobState, blocks: UInt32, modules: [Kiln_V1_ModuleProgress] = [],
    submitted: Int64 = 0
) -> Kiln_V1_JobStatus {
    var s = Kiln_V1_JobStatus()
    s.jobID = id
    s.state = state
    s.blocksTotal = blocks
    s.modules = modules
    s.submittedUnixMs = submitted
    return s
}

func update(
    _ seq: UInt64, job: String = "j1", state: Kiln_V1_JobState = .unspecified,
    module m: Kiln_V1_ModuleProgress? = nil, status s: Kiln_V1_JobStatus? = nil
) -> Kiln_V1_ProgressUpdate {
    var u = Kiln_V1_ProgressUpdate()
    u.sequence = seq
    u.jobID = job
    u.state = state
    if let m { u.module = m }
    if let s { u.status = s }
    return u
}
