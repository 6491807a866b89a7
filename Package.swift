// swift-tools-version: 6.1
import PackageDescription

// Kiln: distributed post-training quantization of LLMs. One target per layer;
// see docs/ARCHITECTURE.md for which layer may import which.

// F16C/AVX2/FMA make half-precision conversion and SIMD loops fast; every
// machine of this project's kind has them. The flag is for Linux only, where this
// project's machines are x86-64 (SwiftPM has no architecture condition; an arm64
// Linux host would have to drop it).
let fast: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"], .when(platforms: [.linux]))]
/// Swift 6 language mode: strict concurrency checking.
let swift6: [SwiftSetting] = fast + [.swiftLanguageMode(.v6)]

let package = Package(
    name: "Kiln",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "kiln", targets: ["kiln"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Traits off: neither swift-configuration nor the full-Foundation extras are used.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CZeroMQ", path: "Sources/CZeroMQ"),
        // oneDNN (Debian libdnnl-dev): only the Int8GEMM target links it.
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL"),
        .target(name: "Tensor", dependencies: ["CBLAS"], swiftSettings: swift6),
        .target(name: "ModelIO", dependencies: ["Tensor"], swiftSettings: swift6),
        .target(name: "Int8GEMM", dependencies: ["CDNNL", "Tensor"], swiftSettings: swift6),
        .target(name: "Tokenizers", swiftSettings: swift6),
        .target(name: "Models", dependencies: ["Tensor", "ModelIO", "Tokenizers"], swiftSettings: swift6),
        .target(name: "Calibration", dependencies: ["Tensor"], swiftSettings: swift6),
        .target(name: "Quantization", dependencies: ["Tensor"], swiftSettings: swift6),
        .target(
            name: "Jobs",
            dependencies: ["Tensor", "ModelIO", "Tokenizers", "Models", "Calibration", "Quantization", "Int8GEMM"],
            swiftSettings: swift6),
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ"], swiftSettings: swift6),
        .target(
            name: "KilnProtocol", dependencies: ["ZeroMQ", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: swift6),
        // What only the cluster needs: task names and payloads (kiln.v1 protobuf), spec conversion.
        .target(
            name: "Cluster",
            dependencies: [
                "Tensor", "ModelIO", "Calibration", "Quantization", "Jobs", "KilnProtocol",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swift6),
        // Series through swift-metrics (the coordinator's and the workers'), backend-free.
        .target(
            name: "KilnMetrics", dependencies: [.product(name: "CoreMetrics", package: "swift-metrics")],
            swiftSettings: swift6),
        .target(
            name: "Coordinator",
            dependencies: [
                "ModelIO", "Jobs", "KilnProtocol", "ZeroMQ", "Cluster", "KilnMetrics",
                .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: swift6),
        .target(
            name: "Worker",
            dependencies: [
                "Tensor", "Jobs", "KilnProtocol", "ZeroMQ", "Cluster", "KilnMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: swift6),
        // `kiln run --workers N`: a coordinator and N workers in one process.
        .target(
            name: "Embedded",
            dependencies: [
                "Tensor", "Jobs", "KilnProtocol", "ZeroMQ", "Cluster", "Coordinator", "Worker",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swift6),
        .target(
            name: "Client", dependencies: ["KilnProtocol", "ZeroMQ", "Jobs", "ModelIO", "Cluster"],
            swiftSettings: swift6),
        // The coordinator's web dashboard and every process's /metrics (Hummingbird, Prometheus text).
        .target(
            name: "Web",
            dependencies: [
                "KilnProtocol", "ZeroMQ", "Client", .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swift6),
        .executableTarget(
            name: "kiln",
            dependencies: [
                "Tensor", "ModelIO", "Tokenizers", "Models", "Calibration", "Jobs", "ZeroMQ", "KilnProtocol", "Cluster",
                "Coordinator", "Worker", "Embedded", "Client", "Web",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swift6),
        .target(name: "TestSupport", dependencies: ["ModelIO"], path: "Tests/TestSupport", swiftSettings: swift6),
        .testTarget(name: "TensorTests", dependencies: ["Tensor"], swiftSettings: swift6),
        .testTarget(
            name: "Int8GEMMTests", dependencies: ["CDNNL", "Int8GEMM", "Tensor", "ModelIO", "TestSupport"],
            swiftSettings: swift6),
        .testTarget(name: "ModelIOTests", dependencies: ["Tensor", "ModelIO", "TestSupport"], swiftSettings: swift6),
        .testTarget(
            name: "TokenizersTests", dependencies: ["ModelIO", "Tokenizers", "TestSupport"], swiftSettings: swift6),
        .testTarget(
            name: "ModelsTests", dependencies: ["Tensor", "ModelIO", "Models", "TestSupport"], swiftSettings: swift6),
        .testTarget(
            name: "CalibrationTests", dependencies: ["Tensor", "Calibration", "TestSupport"], swiftSettings: swift6),
        .testTarget(
            name: "QuantizationTests", dependencies: ["Tensor", "Calibration", "Quantization", "TestSupport"],
            swiftSettings: swift6),
        .testTarget(
            name: "JobsTests",
            dependencies: [
                "Tensor", "ModelIO", "Tokenizers", "Models", "Calibration", "Quantization", "Jobs", "TestSupport",
            ],
            swiftSettings: swift6),
        .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ", "TestSupport"], swiftSettings: swift6),
        .testTarget(
            name: "KilnProtocolTests",
            dependencies: [
                "ZeroMQ", "KilnProtocol", "TestSupport", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swift6),
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "Tensor", "ModelIO", "Calibration", "Quantization", "Jobs", "ZeroMQ", "KilnProtocol", "Cluster",
                "Coordinator", "Worker", "Embedded", "Client", "Web", "TestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swift6),
        .testTarget(name: "KilnCLITests", dependencies: ["ModelIO", "TestSupport"], swiftSettings: swift6),
        .testTarget(
            name: "ClientTests", dependencies: ["ZeroMQ", "KilnProtocol", "Client", "TestSupport"],
            swiftSettings: swift6),
        .testTarget(name: "ClusterCLITests", dependencies: ["TestSupport"], swiftSettings: swift6),
    ],
    swiftLanguageModes: [.v5]
)
