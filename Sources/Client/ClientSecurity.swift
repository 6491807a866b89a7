import Foundation
import ZeroMQ

/// CurveZMQ settings of a client socket: the coordinator's public key and this
/// client's key pair (which the coordinator's allow-list must hold).
public struct ClientSecurity: Sendable, Equatable {
    public var serverPublicKey: String
    public var keys: ZMQCurveKeyPair
    /// The key pair was made for this process (no secret key given): no allow-list holds it.
    public var ephemeral = false
    /// Where the keys came from, for errors ("--curve-server-key FILE, --curve-secret FILE").
    public var source = "the CURVE keys"

    public init(serverPublicKey: String, keys: ZMQCurveKeyPair, ephemeral: Bool = false) {
        self.serverPublicKey = serverPublicKey
        self.keys = keys
        self.ephemeral = ephemeral
    }

    /// From Z85 strings; without a secret key a fresh pair is made (enough for a
    /// coordinator that accepts any client that knows its key).
    public init(serverPublicKey: String, secretKey: String?) throws {
        if let why = Z85.keyProblem(serverPublicKey) {
            throw ClientError.badKey("the coordinator's CURVE public key is not usable: \(why)")
        }
        let keys: ZMQCurveKeyPair
        do {
            keys = try secretKey.map { try ZMQCurveKeyPair(secretKey: $0) } ?? ZMQCurveKeyPair.generate()
        } catch {
            throw ClientError.badKey("the client's CURVE secret key is not usable: \(error)")
        }
        self.init(serverPublicKey: serverPublicKey, keys: keys, ephemeral: secretKey == nil)
    }

    /// Applies the options; must run before connect.
    func apply(to socket: ZMQSocket) throws {
        do {
            try socket.set([
                .curveServerKey(serverPublicKey), .curvePublicKey(keys.publicKey), .curveSecretKey(keys.secretKey),
            ])
        } catch {
            throw ClientError.badKey(
                "\(source): libzmq refused the keys (\(error)); make a pair with `kiln keygen NAME`")
        }
    }
}
