import NIOCore
import NIOSSL
import NIOTLS

/// TLS for one of a member's listeners and the connections it dials: between members (etcd's
/// `--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`, `--peer-client-cert-auth`),
/// or for the clients of raftkv's HTTP API (`--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth`).
///
/// Between members, every connection is encrypted, and the dialler checks that the listening member's
/// certificate is issued by the trusted CA and names the member it dialled. With client
/// certificate authentication the listening member requires the same of the dialler, and its
/// certificate then binds its hello: a certificate speaks for the members it names, as URI SANs
/// `raft://member/ID` (`tools/make-test-certs` makes such certificates), and for no other.
/// Without client certificate authentication anyone who can reach the port may say hello as
/// any member (the transport logs it once at startup).
public struct MemberTLS: Sendable {
  /// For the connections this member accepts.
  public let serverContext: NIOSSLContext
  /// For the connections this member dials.
  public let clientContext: NIOSSLContext
  /// Whether a dialler must present a certificate from the trusted CA naming the member it
  /// says it is.
  public let clientCertAuth: Bool

  /// Loads the certificate chain and key (PEM) this member presents, and the CA (PEM) that
  /// issues its peers' certificates (nil: the system's roots). Client certificate
  /// authentication needs the CA file. Throws `MemberTLSError` naming the file and the problem.
  public init(certificateFile: String, keyFile: String, trustedCAFile: String?, clientCertAuth: Bool)
    throws(MemberTLSError)
  {
    let chain: [NIOSSLCertificate]
    let key: NIOSSLPrivateKey
    do {
      chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
    } catch {
      throw MemberTLSError("cannot load the certificate \(certificateFile): \(error)")
    }
    guard !chain.isEmpty else { throw MemberTLSError("no certificate in \(certificateFile)") }
    do {
      key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
    } catch {
      throw MemberTLSError("cannot load the private key \(keyFile): \(error)")
    }
    var roots = NIOSSLTrustRoots.default
    if let trustedCAFile {
      do {
        roots = .certificates(try NIOSSLCertificate.fromPEMFile(trustedCAFile))
      } catch {
        throw MemberTLSError("cannot load the trusted CA \(trustedCAFile): \(error)")
      }
    } else if clientCertAuth {
      throw MemberTLSError("client certificate authentication needs a trusted CA file")
    }
    var server = TLSConfiguration.makeServerConfiguration(
      certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    server.minimumTLSVersion = .tlsv12
    server.trustRoots = roots
    // The dialler's address says nothing about who it is: its certificate's member ids do
    // (checked against its hello).
    server.certificateVerification = clientCertAuth ? .noHostnameVerification : .none
    var client = TLSConfiguration.makeClientConfiguration()
    client.minimumTLSVersion = .tlsv12
    client.certificateChain = chain.map { .certificate($0) }
    client.privateKey = .privateKey(key)
    client.trustRoots = roots
    // Members are dialled by address; the certificate must name the member dialled instead.
    client.certificateVerification = .noHostnameVerification
    do {
      serverContext = try NIOSSLContext(configuration: server)
      clientContext = try NIOSSLContext(configuration: client)
    } catch {
      throw MemberTLSError("cannot set up TLS with \(certificateFile) and \(keyFile): \(error)")
    }
    self.clientCertAuth = clientCertAuth
  }

  /// The URI SAN prefix that names a member in its certificate.
  public static let memberURIPrefix = "raft://member/"

  /// The member ids `certificate` speaks for: its URI SANs `raft://member/ID`.
  public static func memberIDs(of certificate: NIOSSLCertificate) -> Set<UInt64> {
    var ids: Set<UInt64> = []
    for san in certificate._subjectAlternativeNames() where san.nameType == .uri {
      let uri = String(decoding: san.contents, as: UTF8.self)
      if uri.hasPrefix(memberURIPrefix), let id = UInt64(uri.dropFirst(memberURIPrefix.count)), id != 0 {
        ids.insert(id)
      }
    }
    return ids
  }
}

/// A TLS setup that cannot be loaded.
public struct MemberTLSError: Error, Equatable, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// On the dialling side: the listening member's certificate must name the member dialled (the
/// CA alone would let any member's certificate answer for another). Nothing this side writes
/// reaches the TLS handler before that is checked: writes wait here until the handshake
/// completes with the right certificate, and fail if it does not.
final class DialledIdentityCheck: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias InboundOut = ByteBuffer
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private let peerID: UInt64
  private var verified = false
  /// Writes waiting for the check, in order, and whether a flush came after them.
  private var held: [(data: NIOAny, promise: EventLoopPromise<Void>?)] = []
  private var flushHeld = false

  init(peerID: UInt64) { self.peerID = peerID }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    if verified {
      context.write(data, promise: promise)
    } else {
      held.append((data, promise))
    }
  }

  func flush(context: ChannelHandlerContext) {
    if verified { context.flush() } else { flushHeld = true }
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if case TLSUserEvent.handshakeCompleted = event, !verified {
      let certificate = try? context.pipeline.syncOperations.nioSSL_peerCertificate()
      let ids = certificate.map(MemberTLS.memberIDs(of:)) ?? []
      guard ids.contains(peerID) else {
        failHeld()
        context.fireErrorCaught(
          FrameError.protocolViolation(
            "the certificate of the member dialled as \(peerID) names members \(ids.sorted()), not \(peerID)"))
        context.close(promise: nil)
        return
      }
      verified = true
      for h in held { context.write(h.data, promise: h.promise) }
      held = []
      if flushHeld { context.flush() }
    }
    context.fireUserInboundEventTriggered(event)
  }

  func channelInactive(context: ChannelHandlerContext) {
    failHeld()
    context.fireChannelInactive()
  }

  private func failHeld() {
    let waiting = held
    held = []
    for h in waiting { h.promise?.fail(ChannelError.ioOnClosedChannel) }
  }
}
