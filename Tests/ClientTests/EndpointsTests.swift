import Client
import XCTest

final class EndpointsTests: XCTestCase {
    func testCoordinatorDefaults() {
        XCTAssertEqual(
            Endpoints.coordinator(explicit: "tcp://a:1", environment: ["KILN_COORDINATOR": "tcp://b:2"]), "tcp://a:1")
        XCTAssertEqual(
            Endpoints.coordinator(explicit: nil, environment: ["KILN_COORDINATOR": "tcp://b:2"]), "tcp://b:2")
        XCTAssertEqual(
            Endpoints.coordinator(explicit: nil, environment: ["KILN_COORDINATOR": ""]), "tcp://127.0.0.1:5555")
        XCTAssertEqual(Endpoints.coordinator(explicit: nil, environment: [:]), "tcp://127.0.0.1:5555")
    }

    func testPublishIsListenPortPlusOne() throws {
        XCTAssertEqual(try Endpoints.publish(forCoordinator: "tcp://127.0.0.1:5555"), "tcp://127.0.0.1:5556")
        XCTAssertEqual(try Endpoints.publish(forCoordinator: "tcp://[::1]:7000"), "tcp://[::1]:7001")
        for bad in ["ipc:///tmp/k", "tcp://host", "tcp://host:x", "tcp://host:65535", "tcp://:5555"] {
            XCTAssertThrowsError(try Endpoints.publish(forCoordinator: bad)) { error in
                XCTAssertTrue("\(error)".contains(bad), "\(error)")
            }
        }
    }

    func testNoAnswerMessageNamesTheEndpoint() {
        XCTAssertEqual(
            ClientError.noAnswer(endpoint: "tcp://h:1", timeoutMs: 5000).description,
            "no answer from tcp://h:1 within 5 s: is `kiln coordinator` running there?")
        XCTAssertEqual(
            ClientError.noAnswer(endpoint: "tcp://h:1", timeoutMs: 300).description,
            "no answer from tcp://h:1 within 300 ms: is `kiln coordinator` running there?")
    }
}
