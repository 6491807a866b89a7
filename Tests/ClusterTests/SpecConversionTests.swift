import Cluster
import Jobs
import KilnProtocol
import XCTest

/// JobSpec <-> kiln.v1.JobSpec keeps the error-report choice, both in spec_json and in the
/// portable fields (a client that sends only those), and leaves it unset when unset.
final class SpecConversionTests: XCTestCase {
    func testErrorReportRoundTrips() throws {
        var s = JobSpec(model: "/m.gguf", calibration: "/c.txt", output: "/o.gguf")
        s.method = .rtn
        for choice in [nil, true, false] as [Bool?] {
            s.errorReport = choice
            var p = try SpecConversion.toProto(s)
            XCTAssertEqual(p.hasErrorReport, choice != nil)
            XCTAssertEqual(try SpecConversion.fromProto(p), s)
            p.specJson = ""
            let portable = try SpecConversion.fromProto(try Kiln_V1_JobSpec(serializedBytes: p.serializedData()))
            XCTAssertEqual(portable.errorReport, choice)
            XCTAssertEqual(portable.needsStatistics, choice == true)
        }
    }
}
