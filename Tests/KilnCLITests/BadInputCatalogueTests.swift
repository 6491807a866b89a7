import Foundation
import ModelIO
import TestSupport
import XCTest

/// The bad-input catalogue: ordinary commands with damaged files, bad recipes, bad texts,
/// endpoints and keys, run through the built binary as a user would. Each must exit
/// non-zero (not by a signal), within its time, with a message naming the file, flag or
/// field, and must leave every file in the sandbox exactly as it was.
final class BadInputCatalogueTests: XCTestCase {
    struct Case {
        var name: String
        var args: [String]
        /// Every fragment must appear in stderr.
        var expect: [String]
    }

    /// A sandbox of inputs: the real SmolLM2 cut to 2 blocks, its damaged variants, texts,
    /// a user's directory, a key file or two.
    final class Sandbox {
        let dir: URL
        var model: String { path("m.gguf") }
        var calib: String { path("calib.txt") }
        init() throws {
            dir = Paths.tempDir("kiln-catalogue")
            let src = Paths.smollm2
            guard FileManager.default.fileExists(atPath: src.path) else { throw XCTSkip("SmolLM2 asset missing") }
            let fm = FileManager.default
            try GGUFVariants.write(
                from: src, to: url("m.gguf"), blocks: 2, overrides: ["llama.block_count": .uint32(2)])
            let variants: [(String, [String: GGUFValue], Set<String>)] = [
                ("ctx0.gguf", ["llama.context_length": .uint32(0)], []),
                ("bos.gguf", ["tokenizer.ggml.bos_token_id": .uint32(9_999_999)], []),
                ("eos.gguf", ["tokenizer.ggml.eos_token_id": .int32(-7)], []),
                ("blocks.gguf", ["llama.block_count": .uint32(UInt32.max)], []),
                ("noarch.gguf", [:], ["general.architecture"]),
                ("gpt2.gguf", ["general.architecture": .string("gpt2")], []),
                ("hidden0.gguf", ["llama.embedding_length": .uint32(0)], []),
                ("heads0.gguf", ["llama.attention.head_count": .uint32(0)], []),
                ("notok.gguf", [:], ["tokenizer.ggml.tokens"]),
                ("sentencepiece.gguf", ["tokenizer.ggml.model": .string("llama")], []),
            ]
            for (name, overrides, removing) in variants {
                try GGUFVariants.write(from: url("m.gguf"), to: url(name), overrides: overrides, removing: removing)
            }
            let whole = try Data(contentsOf: url("m.gguf"))
            try whole.prefix(1000).write(to: url("head.gguf"))
            try whole.prefix(whole.count / 2).write(to: url("half.gguf"))
            try Data().write(to: url("empty.gguf"))
            try Data("GGUF this is not a model at all".utf8).write(to: url("junk.gguf"))
            var lying = Data("GGUF".utf8) + Data([3, 0, 0, 0])
            lying += Data(repeating: 0xFF, count: 16)  // tensor and metadata counts of 2^64-1
            try lying.write(to: url("counts.gguf"))
            // safetensors: no config.json; damaged config.json; header length beyond the file.
            try fm.createDirectory(at: url("st-noconfig"), withIntermediateDirectories: false)
            try fm.copyItem(
                at: Paths.minilmDir.appendingPathComponent("model.safetensors"),
                to: url("st-noconfig/model.safetensors"))
            try fm.createDirectory(at: url("st-badconfig"), withIntermediateDirectories: false)
            try fm.copyItem(
                at: Paths.minilmDir.appendingPathComponent("model.safetensors"),
                to: url("st-badconfig/model.safetensors"))
            try Data("{ not json".utf8).write(to: url("st-badconfig/config.json"))
            try fm.createDirectory(at: url("st-header"), withIntermediateDirectories: false)
            var header = Data()
            withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { header.append(contentsOf: $0) }
            try (header + Data("{}".utf8)).write(to: url("st-header/model.safetensors"))
            try Data(#"{"architectures":["BertModel"],"model_type":"bert"}"#.utf8).write(
                to: url("st-header/config.json"))
            try fm.createDirectory(at: url("bert-badtok"), withIntermediateDirectories: false)
            for f in ["model.safetensors", "config.json"] {
                try fm.copyItem(at: Paths.minilmDir.appendingPathComponent(f), to: url("bert-badtok/\(f)"))
            }
            try Data("{\"model\": 42}".utf8).write(to: url("bert-badtok/tokenizer.json"))
            // Texts.
            try fm.copyItem(at: Paths.fixture("text/fortunes_calib.txt"), to: url("calib.txt"))
            try Data().write(to: url("empty.txt"))
            try Data([0xFF, 0xFE, 0x00, 0xC3, 0x28, 0xA0, 0xA1]).write(to: url("binary.txt"))
            try Data("a few words".utf8).write(to: url("short.txt"))
            try fm.createDirectory(at: url("textdir"), withIntermediateDirectories: false)
            // A user's directory and an earlier output that is not Kiln's.
            try fm.createDirectory(at: url("mine"), withIntermediateDirectories: false)
            try Data("keep me".utf8).write(to: url("mine/notes.txt"))
            try Data("not a kiln output".utf8).write(to: url("old.gguf"))
            // Keys: wrong length, right length but not Z85.
            try Data("short-key\n".utf8).write(to: url("short.key"))
            try Data((String(repeating: "~", count: 40) + "\n").utf8).write(to: url("notz85.key"))
            try Data("0123456789abcdefghijklmnopqrstuvwxyzABCD\n".utf8).write(to: url("fine.key"))
        }
        func url(_ name: String) -> URL { dir.appendingPathComponent(name) }
        func path(_ name: String) -> String { url(name).path }

        /// Every file under the sandbox with its size and modification time.
        func snapshot() -> [String: String] {
            var out: [String: String] = [:]
            let e = FileManager.default.enumerator(
                at: dir, includingPropertiesForKeys: [.fileSizeKey, .contentModificationDateKey])
            while let u = e?.nextObject() as? URL {
                let v = try? u.resourceValues(forKeys: [.fileSizeKey, .contentModificationDateKey])
                out[u.path] = "\(v?.fileSize ?? -1) \(v?.contentModificationDate?.timeIntervalSince1970 ?? 0)"
            }
            return out
        }
    }

    func cases(_ s: Sandbox) -> [Case] {
        let m = s.model
        let c = s.calib
        let run = ["run", "--model", m, "--calib", c, "--samples", "2", "--seqlen", "64", "--method", "rtn"]
        let out = ["--out", s.path("new.gguf")]
        let gptq = ["--format", "gptq-safetensors", "--out", s.path("newdir")]
        func file(_ name: String, _ expect: [String]) -> Case {
            Case(
                name: "run " + name, args: ["run", "--model", s.path(name), "--calib", c] + out, expect: [name] + expect
            )
        }
        let eval = ["eval", m, "--text", c]
        let coord = Paths.tempDir("kiln-catalogue-coord").path
        return [
            // Model files.
            Case(
                name: "missing model", args: ["run", "--model", s.path("nope.gguf"), "--calib", c] + out,
                expect: ["nope.gguf", "--model"]),
            file("empty.gguf", []),
            file("junk.gguf", []),
            file("head.gguf", []),
            file("half.gguf", []),
            file("counts.gguf", []),
            file("ctx0.gguf", ["context length 0"]),
            file("bos.gguf", ["tokenizer.ggml.bos_token_id"]),
            file("eos.gguf", ["tokenizer.ggml.eos_token_id"]),
            file("blocks.gguf", ["block count"]),
            file("noarch.gguf", ["general.architecture"]),
            file("gpt2.gguf", ["gpt2"]),
            file("hidden0.gguf", ["hidden"]),
            file("heads0.gguf", ["heads"]),
            file("notok.gguf", ["tokenizer.ggml.tokens"]),
            file("sentencepiece.gguf", ["tokenizer.ggml.model"]),
            Case(
                name: "eval blocks", args: ["eval", s.path("blocks.gguf"), "--text", c],
                expect: ["blocks.gguf", "block count"]),
            Case(
                name: "eval ctx0", args: ["eval", s.path("ctx0.gguf"), "--text", c],
                expect: ["ctx0.gguf", "context length"]),
            Case(name: "inspect junk", args: ["inspect", s.path("junk.gguf")], expect: ["junk.gguf"]),
            Case(name: "inspect half", args: ["inspect", s.path("half.gguf")], expect: ["half.gguf"]),
            Case(name: "inspect counts", args: ["inspect", s.path("counts.gguf")], expect: ["counts.gguf"]),
            Case(
                name: "model is a directory", args: ["run", "--model", s.path("mine"), "--calib", c] + out,
                expect: ["mine"]),
            Case(
                name: "safetensors without config", args: ["eval", s.path("st-noconfig"), "--text", c],
                expect: ["config.json"]),
            Case(
                name: "safetensors damaged config", args: ["embed", s.path("st-badconfig"), "--text", c],
                expect: ["config.json"]),
            Case(
                name: "safetensors header length", args: ["inspect", s.path("st-header")], expect: ["model.safetensors"]
            ),
            Case(
                name: "damaged tokenizer.json", args: ["embed", s.path("bert-badtok"), "--text", c],
                expect: ["tokenizer"]),
            Case(
                name: "embed on llama", args: ["embed", m, "--text", c], expect: ["m.gguf", "causal language model"]),
            Case(name: "eval on bert", args: ["eval", Paths.minilmDir.path, "--text", c], expect: ["encoder"]),
            // Recipes.
            Case(
                name: "bits 9", args: run + ["--bits", "9", "--format", "gptq-safetensors", "--out", s.path("d")],
                expect: ["--bits 9"]),
            Case(name: "bits -1", args: run + ["--bits", "-1"] + gptq, expect: ["--bits -1"]),
            Case(name: "group -5", args: run + ["--group", "-5"] + gptq, expect: ["--group -5"]),
            Case(name: "group 0", args: run + ["--group", "0"] + gptq, expect: ["--group 0"]),
            Case(
                name: "group 2^62", args: run + ["--group", "4611686018427387904"] + gptq,
                expect: ["--group 4611686018427387904"]),
            Case(
                name: "group wider than the model", args: run + ["--group", "4096"] + gptq,
                expect: ["--group 4096", "columns"]),
            Case(name: "samples 0", args: run + ["--samples", "0"] + out, expect: ["--samples 0"]),
            Case(name: "samples -3", args: run + ["--samples", "-3"] + out, expect: ["--samples -3"]),
            Case(
                name: "samples 1e12", args: run + ["--samples", "1000000000000"] + out,
                expect: ["--samples 1000000000000"]),
            Case(
                name: "samples Int.max", args: run + ["--samples", "9223372036854775807"] + out, expect: ["--samples"]),
            Case(
                name: "samples beyond Int", args: run + ["--samples", "99999999999999999999"] + out,
                expect: ["--samples"]),
            Case(
                // RTN gathers statistics (so holds activations) only for the error report.
                name: "samples x seqlen beyond memory",
                args: run + ["--samples", "16000000", "--seqlen", "4096", "--error-report"] + out,
                expect: ["estimated", "--max-job-memory"]),
            Case(name: "seqlen 1", args: run + ["--seqlen", "1"] + out, expect: ["--seqlen 1"]),
            Case(
                name: "seqlen beyond context", args: run + ["--seqlen", "100000"] + out,
                expect: ["--seqlen 100000", "context"]),
            Case(name: "shard-size 0", args: run + ["--shard-size", "0"] + out, expect: ["--shard-size 0"]),
            Case(
                name: "shard-size Int.max", args: run + ["--shard-size", "9223372036854775807"] + out,
                expect: ["--shard-size"]),
            Case(name: "damp -1", args: run + ["--damp", "-1"] + out, expect: ["--damp"]),
            Case(name: "damp nan", args: run + ["--damp", "nan"] + out, expect: ["--damp"]),
            Case(name: "block-size 0", args: run + ["--block-size", "0"] + out, expect: ["--block-size"]),
            Case(name: "q4_0 with 3 bits", args: run + ["--bits", "3"] + out, expect: ["--bits 3", "gguf-q4_0"]),
            Case(name: "q4_1 with --sym", args: run + ["--format", "gguf-q4_1", "--sym"] + out, expect: ["--sym"]),
            Case(name: "unknown format", args: run + ["--format", "gguf-q9_k"] + out, expect: ["--format"]),
            Case(name: "unknown method", args: run + ["--method", "obq"] + out, expect: ["--method"]),
            Case(name: "unknown mode", args: run + ["--mode", "fast"] + out, expect: ["--mode"]),
            Case(name: "threads 0", args: run + ["--threads", "0"] + out, expect: ["--threads 0"]),
            Case(name: "workers 0", args: run + ["--workers", "0"] + out, expect: ["--workers 0"]),
            Case(
                name: "max-job-memory words", args: run + ["--max-job-memory", "lots"] + out,
                expect: ["--max-job-memory lots"]),
            Case(
                name: "max-job-memory 1M", args: run + ["--max-job-memory", "1M"] + out,
                expect: ["estimated", "1.0 MiB"]),
            Case(
                name: "eval-windows 0", args: run + ["--eval", c, "--eval-windows", "0"] + out,
                expect: ["--eval-windows 0"]),
            // Outputs.
            Case(name: "empty --out", args: run + ["--out", ""], expect: ["--out is empty"]),
            Case(
                name: "--out in a missing directory", args: run + ["--out", s.path("no/such/x.gguf")],
                expect: ["does not exist"]),
            Case(
                name: "--out an existing file", args: run + ["--out", s.path("old.gguf")],
                expect: ["old.gguf", "--overwrite"]),
            Case(name: "--out the model", args: run + ["--out", m, "--overwrite"], expect: ["--model", "input"]),
            Case(
                name: "--out the calibration text", args: run + ["--out", c, "--overwrite"],
                expect: ["--calib", "input"]),
            Case(
                name: "--out the sandbox (holds inputs)",
                args: run + [
                    "--format", "gptq-safetensors", "--out", s.dir.path,
                    "--overwrite",
                ], expect: ["input"]),
            Case(
                name: "--out a user's directory",
                args: run + ["--format", "gptq-safetensors", "--out", s.path("mine")],
                expect: ["mine", "not empty"]),
            Case(
                name: "--out a user's directory, --overwrite",
                args: run + ["--format", "gptq-safetensors", "--out", s.path("mine"), "--overwrite"],
                expect: ["notes.txt"]),
            Case(name: "gguf --out a directory", args: run + ["--out", s.path("textdir")], expect: ["is a directory"]),
            // Texts.
            Case(
                name: "missing calib", args: ["run", "--model", m, "--calib", s.path("nope.txt")] + out,
                expect: ["nope.txt", "--calib"]),
            Case(
                name: "calib is a directory", args: ["run", "--model", m, "--calib", s.path("textdir")] + out,
                expect: ["textdir", "directory"]),
            Case(
                name: "empty calib", args: ["run", "--model", m, "--calib", s.path("empty.txt")] + out,
                expect: ["empty.txt", "empty"]),
            Case(
                name: "binary calib", args: ["run", "--model", m, "--calib", s.path("binary.txt")] + out,
                expect: ["binary.txt", "UTF-8"]),
            Case(
                name: "short calib",
                args: ["run", "--model", m, "--calib", s.path("short.txt"), "--sampler", "consecutive"] + out,
                expect: ["short.txt", "tokens"]),
            Case(
                name: "missing eval text", args: run + ["--eval", s.path("noeval.txt")] + out,
                expect: ["noeval.txt", "--eval"]),
            Case(
                name: "eval text is a directory", args: ["eval", m, "--text", s.path("textdir")],
                expect: ["textdir", "directory"]),
            Case(
                name: "eval binary text", args: ["eval", m, "--text", s.path("binary.txt")],
                expect: ["binary.txt", "UTF-8"]),
            Case(
                name: "eval ctx 100000", args: eval + ["--ctx", "100000"], expect: ["--ctx 100000", "context length"]),
            Case(name: "eval ctx 1", args: eval + ["--ctx", "1"], expect: ["--ctx"]),
            Case(name: "eval windows 0", args: eval + ["--windows", "0"], expect: ["--windows"]),
            Case(name: "eval windows -1", args: eval + ["--windows", "-1"], expect: ["--windows"]),
            Case(
                name: "embed text is a directory", args: ["embed", Paths.minilmDir.path, "--text", s.path("textdir")],
                expect: ["textdir", "directory"]),
            // Endpoints and keys (no coordinator is started: each fails on its own input).
            Case(
                name: "client endpoint scheme", args: ["status", "--coordinator", "bogus://x", "--timeout", "1"],
                expect: ["bogus://x"]),
            Case(name: "client timeout -1", args: ["status", "--timeout", "-1"], expect: ["--timeout"]),
            Case(
                name: "listen on all interfaces without keys",
                args: ["coordinator", "--listen", "tcp://0.0.0.0:45817", "--data-dir", coord],
                expect: ["0.0.0.0", "CURVE"]),
            Case(
                name: "listen scheme", args: ["coordinator", "--listen", "udp://1.2.3.4:5", "--data-dir", coord],
                expect: ["--listen"]),
            Case(
                name: "curve secret without allow-keys",
                args: ["coordinator", "--curve-secret", s.path("fine.key"), "--data-dir", coord],
                expect: ["--allow-keys"]),
            Case(
                name: "missing key file",
                args: ["status", "--curve-server-key", s.path("nokey.pub"), "--timeout", "1"],
                expect: ["nokey.pub"]),
            Case(
                name: "short key file", args: ["status", "--curve-server-key", s.path("short.key"), "--timeout", "1"],
                expect: ["short.key"]),
            Case(
                name: "key file not Z85",
                args: ["status", "--curve-server-key", s.path("notz85.key"), "--timeout", "1"],
                expect: ["notz85.key"]),
        ]
    }

    func testEveryBadInputFailsClearlyAndTouchesNothing() throws {
        let s = try Sandbox()
        let all = cases(s)
        XCTAssertGreaterThanOrEqual(all.count, 60)
        let before = s.snapshot()
        var failures: [String] = []
        for c in all {
            let r = try ProcessRun.kiln(c.args, timeout: 60)
            if r.timedOut {
                failures.append("\(c.name): hung (killed after 60 s)")
                continue
            }
            if r.signalled {
                failures.append("\(c.name): killed by signal \(r.status - 128)\n\(r.stderr.suffix(400))")
                continue
            }
            if r.status == 0 {
                failures.append("\(c.name): exited 0")
                continue
            }
            for f in c.expect where !r.stderr.contains(f) {
                failures.append("\(c.name): message lacks '\(f)': \(r.stderr.suffix(600))")
            }
            let now = s.snapshot()
            if now != before {
                let changed = Set(now.keys).symmetricDifference(before.keys).union(
                    now.keys.filter { before[$0] != nil && now[$0] != before[$0] })
                failures.append("\(c.name): changed the sandbox: \(changed.sorted())")
            }
        }
        XCTAssertEqual(failures, [], "\(failures.count) of \(all.count) cases:\n" + failures.joined(separator: "\n"))
    }
}
