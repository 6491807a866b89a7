import Foundation

// This process's resource use, for reports and the coordinator's job profile.

private func usage() -> rusage {
    var u = rusage()
    #if os(Linux)
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
    #else
    getrusage(RUSAGE_SELF, &u)
    #endif
    return u
}

/// Peak resident set size of this process in bytes (Linux reports KiB).
public func peakRSSBytes() -> Int {
    #if os(Linux)
    return Int(usage().ru_maxrss) * 1024
    #else
    return Int(usage().ru_maxrss)
    #endif
}

/// User plus system CPU time of this process so far, in seconds.
public func processCPUSeconds() -> Double {
    let u = usage()
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}
