import Foundation
import TestSupport
import XCTest

/// Cluster/README.md's two-host walk-through with `kiln keygen`, run on loopback with the
/// built binary: keys, allow-list, coordinator, worker, client; then what an unlisted
/// key, a damaged key file and a swapped pair are told.
final class CurveWalkthroughTests: XCTestCase {
    var bin: URL { Paths.kilnBinary }

    func kiln(_ args: [String], env: [String: String] = [:], timeout: TimeInterval = 30) throws -> ProcessRun {
        try ProcessRun.run(bin, args, env: env, timeout: timeout)
    }

    /// The key line of a file `kiln keygen` wrote.
    func key(_ url: URL) throws -> String {
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
        return String(try XCTUnwrap(lines.first { !$0.hasPrefix("#") && !$0.isEmpty }))
    }

    func testKeygenWalkthroughOnLoopback() throws {
        guard FileManager.default.isExecutableFile(atPath: bin.path) else {
            throw XCTSkip("kiln binary not built at \(bin.path); run `swift build -c release` first")
        }
        continueAfterFailure = false
        let dir = Paths.tempDir("kiln-walkthrough")
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

        // Keys: one for the coordinator, one worker, one client (and one nobody allowed).
        for name in ["coordinator", "worker1", "alice", "mallory"] {
            let r = try kiln(["keygen", path(name)])
            XCTAssertEqual(r.status, 0, r.summary)
        }
        let secretMode =
            try FileManager.default.attributesOfItem(atPath: path("alice.secret"))[.posixPermissions] as? Int
        XCTAssertEqual(secretMode, 0o600)
        let again = try kiln(["keygen", path("alice")])
        XCTAssertEqual(again.status, 1, again.summary)
        XCTAssertTrue(
            again.stderr.contains("\(path("alice.pub")) already exists; keygen never overwrites a key"), again.stderr)
        let alice = try key(dir.appendingPathComponent("alice.pub"))
        let mallory = try key(dir.appendingPathComponent("mallory.pub"))

        // Coordinator host: the allow-list is the .pub files of who may come in.
        let allowed =
            try String(contentsOfFile: path("worker1.pub"), encoding: .utf8)
            + String(contentsOfFile: path("alice.pub"), encoding: .utf8)
        try allowed.write(toFile: path("allowed.pub"), atomically: true, encoding: .utf8)
        let port = try Self.freePortPair()
        let endpoint = "tcp://127.0.0.1:\(port)"
        let coordinator = try Background(
            bin,
            [
                "coordinator", "--listen", endpoint, "--data-dir", path("data"),
                "--curve-secret", path("coordinator.secret"), "--allow-keys", path("allowed.pub"),
            ],
            log: dir.appendingPathComponent("coordinator.log"))
        defer { coordinator.stop() }
        // Worker host.
        let worker = try Background(
            bin,
            [
                "worker", "--coordinator", endpoint, "--id", "worker1",
                "--curve-server-key", path("coordinator.pub"), "--curve-secret", path("worker1.secret"),
            ],
            log: dir.appendingPathComponent("worker.log"))
        defer { worker.stop() }

        // Client: the env variables hold the key files' paths.
        let client = [
            "KILN_COORDINATOR": endpoint, "KILN_CURVE_SERVER_KEY": path("coordinator.pub"),
            "KILN_CURVE_SECRET": path("alice.secret"),
        ]
        var workers = try kiln(["workers", "--json", "--timeout", "2"], env: client)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && !(workers.status == 0 && workers.stdout.contains("\"worker1\"")) {
            Thread.sleep(forTimeInterval: 0.3)
            workers = try kiln(["workers", "--json", "--timeout", "2"], env: client)
        }
        XCTAssertEqual(
            workers.status, 0, workers.summary + "\ncoordinator:\n" + coordinator.text + "\nworker:\n" + worker.text)
        XCTAssertTrue(workers.stdout.contains("\"worker1\""), workers.stdout)

        // A key not on the list: refused, and told which key to have added.
        var intruder = client
        intruder["KILN_CURVE_SECRET"] = path("mallory.secret")
        let refused = try kiln(["workers", "--timeout", "5"], env: intruder)
        XCTAssertEqual(refused.status, 1, refused.summary)
        XCTAssertTrue(
            refused.stderr.contains(
                "the coordinator at \(endpoint) refused this CURVE key "
                    + "(ask its operator to add \(mallory) to --allow-keys)"), refused.stderr)
        XCTAssertTrue(coordinator.text.contains("ZAP denied CURVE key \(mallory) from 127.0.0.1"), coordinator.text)
        XCTAssertFalse(coordinator.text.contains("ZAP denied CURVE key \(alice)"), coordinator.text)

        // A damaged key file: the flag, the file, the line and the character are named.
        let bad = String(alice.prefix(7)) + "," + String(alice.dropFirst(8))
        try "# pasted by hand\n\(bad)\n".write(toFile: path("bad.pub"), atomically: true, encoding: .utf8)
        let damaged = try kiln(["workers", "--curve-server-key", path("bad.pub")], env: client)
        XCTAssertEqual(damaged.status, 1, damaged.summary)
        XCTAssertTrue(
            damaged.stderr.contains(
                "--curve-server-key \(path("bad.pub")): line 2 is not a Z85 CURVE key: "
                    + "character 8 (',') is not in the Z85 alphabet"), damaged.stderr)
        // A swapped pair: the public half given as the secret.
        let swapped = try kiln(["workers", "--curve-secret", path("alice.pub")], env: client)
        XCTAssertEqual(swapped.status, 1, swapped.summary)
        XCTAssertTrue(
            swapped.stderr.contains("--curve-secret \(path("alice.pub")): the file holds a public key"), swapped.stderr)
        // Nobody at a port: told to start a coordinator.
        let nobody = try kiln([
            "workers", "--coordinator", "tcp://127.0.0.1:\(try Self.freePortPair())", "--timeout", "1",
        ])
        XCTAssertTrue(nobody.stderr.contains("no coordinator answers at"), nobody.summary)

        for p in [worker, coordinator] {
            let seconds = p.secondsToExit(after: SIGTERM, limit: 5)
            XCTAssertLessThan(seconds ?? 99, 1.0, p.text)
        }
    }

    /// A port P with P + 1 also free (the coordinator publishes on P + 1).
    static func freePortPair() throws -> Int {
        guard let p = LoopbackPorts.freePair() else { throw XCTSkip("no free pair of loopback ports") }
        return p
    }
}
