import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Raft
import RaftTestSupport
import Synchronization
import XCTest

@_spi(Testing) @testable import RaftTransport

/// Mutual TLS between members, with real certificates from `tools/make-test-certs`: members
/// that hold certificates from the trusted CA naming them talk; a connection without a valid
/// certificate, or whose certificate names another member, is closed and delivers nothing.
final class TLSTransportTests: XCTestCase {
  let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
  var certs = ""

  override func setUpWithError() throws {
    certs = try makeTestDirectory("raft-tls")
    try makeTestCertificates(in: certs, members: [1, 2, 3])
  }

  override func tearDown() {
    try? group.syncShutdownGracefully()
    try? FileManager.default.removeItem(atPath: certs)
  }

  func tls(_ name: String, ca: String = "ca.crt") throws -> MemberTLS {
    try MemberTLS(
      certificateFile: "\(certs)/\(name).crt", keyFile: "\(certs)/\(name).key", trustedCAFile: "\(certs)/\(ca)",
      clientCertAuth: true)
  }

  func transport(_ id: UInt64, _ recorder: Recorder, tls: MemberTLS) throws -> TCPTransport {
    var options = TCPTransportOptions()
    options.tls = tls
    let t = try TCPTransport(
      id: id, listenAddress: PeerAddress(host: "127.0.0.1", port: 0, secure: true), options: options, group: group)
    try t.start(delegate: recorder.delegate)
    addTeardownBlock { t.shutdown() }
    return t
  }

  func address(_ t: TCPTransport) -> PeerAddress { PeerAddress(host: "127.0.0.1", port: t.localPort!, secure: true) }

  /// Dials `port` with `tls` (nil: plain TCP), says hello as `from`, and sends a heartbeat with
  /// `commit`.
  func dial(_ port: Int, tls: MemberTLS?, as from: UInt64, commit: UInt64) throws -> any Channel {
    let channel = try ClientBootstrap(group: group)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          if let tls {
            try channel.pipeline.syncOperations.addHandler(
              try NIOSSLClientHandler(context: tls.clientContext, serverHostname: nil))
          }
        }
      }
      .connect(host: "127.0.0.1", port: port).wait()
    var bytes = channel.allocator.buffer(capacity: 256)
    bytes.writeFrame(.hello) { b in
      b.writeInteger(from)
      b.writeInteger(UInt64(2))
    }
    bytes.writeFrame(.messages) { b in
      b.writeBytes(
        RaftCodec.encodeMessages([Message(type: .msgHeartbeat, to: 2, from: from, term: 1, commit: commit)]))
    }
    channel.writeAndFlush(bytes, promise: nil)
    addTeardownBlock { channel.close(promise: nil) }
    return channel
  }

  /// Whether the listening member closes `channel` within 10 seconds.
  func closed(_ channel: any Channel) throws -> Bool {
    let closed = channel.eventLoop.makePromise(of: Bool.self)
    channel.closeFuture.whenComplete { _ in closed.succeed(true) }
    let timer = channel.eventLoop.scheduleTask(in: .seconds(10)) { closed.succeed(false) }
    let result = try closed.futureResult.wait()
    timer.cancel()
    return result
  }

  func testMembersWithCertificatesFromTheTrustedCATalk() throws {
    let (ra, rb) = (Recorder(), Recorder())
    let a = try transport(1, ra, tls: try tls("member-1"))
    let b = try transport(2, rb, tls: try tls("member-2"))
    a.addPeer(2, address: address(b))
    b.addPeer(1, address: address(a))
    XCTAssertTrue(
      rb.wait { r in
        a.send([Message(type: .msgHeartbeat, to: 2, from: 1, term: 1, commit: 3)])
        return r.count > 0
      })
    b.send([Message(type: .msgHeartbeatResp, to: 1, from: 2, term: 1)])
    XCTAssertTrue(ra.wait { $0.count > 0 })
    XCTAssertEqual(b.inboundConnections(from: 1).count, 1)
  }

  func testAPeerWithoutAValidCertificateIsRefused() throws {
    let rb = Recorder()
    let b = try transport(2, rb, tls: try tls("member-2"))
    b.addPeer(1, address: PeerAddress(host: "127.0.0.1", port: 1, secure: true))
    b.addPeer(3, address: PeerAddress(host: "127.0.0.1", port: 1, secure: true))
    // No TLS at all; a certificate from another CA with member 1's names (its dialler trusts
    // the members' CA, so the refusal is the listening member's).
    XCTAssertTrue(try closed(try dial(b.localPort!, tls: nil, as: 1, commit: 11)))
    XCTAssertTrue(try closed(try dial(b.localPort!, tls: try tls("rogue"), as: 1, commit: 12)))
    // The positive control: member 3's certificate, speaking as member 3, is heard.
    let honest = try dial(b.localPort!, tls: try tls("member-3"), as: 3, commit: 13)
    XCTAssertTrue(rb.wait { $0.messages.withLock { $0.contains { $0.commit == 13 } } })
    XCTAssertTrue(honest.isActive)
    XCTAssertFalse(rb.messages.withLock { $0.contains { $0.commit == 11 || $0.commit == 12 } })
  }

  func testAMembersCertificateCannotSpeakForAnotherMember() throws {
    let rb = Recorder()
    let b = try transport(2, rb, tls: try tls("member-2"))
    b.addPeer(1, address: PeerAddress(host: "127.0.0.1", port: 1, secure: true))
    b.addPeer(3, address: PeerAddress(host: "127.0.0.1", port: 1, secure: true))
    // Member 3's certificate saying hello as member 1: refused at the hello.
    XCTAssertTrue(try closed(try dial(b.localPort!, tls: try tls("member-3"), as: 1, commit: 21)))
    let honest = try dial(b.localPort!, tls: try tls("member-3"), as: 3, commit: 22)
    XCTAssertTrue(rb.wait { $0.messages.withLock { $0.contains { $0.commit == 22 } } })
    XCTAssertTrue(honest.isActive)
    XCTAssertFalse(rb.messages.withLock { $0.contains { $0.commit == 21 } })
  }

  func testADiallerSendsNothingToAListenerWhoseCertificateNamesAnotherMember() throws {
    let (ra, rc) = (Recorder(), Recorder())
    let a = try transport(1, ra, tls: try tls("member-1"))
    // Node 2's address, answered by a listener holding member 3's certificate.
    let c = try transport(2, rc, tls: try tls("member-3"))
    c.addPeer(1, address: address(a))
    a.addPeer(2, address: address(c))
    // A second, honest listener proves a's messages flow meanwhile (to member 3).
    let rd = Recorder()
    let d = try transport(3, rd, tls: try tls("member-3"))
    d.addPeer(1, address: address(a))
    a.addPeer(3, address: address(d))
    XCTAssertTrue(
      rd.wait { r in
        a.send([
          Message(type: .msgHeartbeat, to: 2, from: 1, term: 1, commit: 31),
          Message(type: .msgHeartbeat, to: 3, from: 1, term: 1, commit: 32),
        ])
        return r.count > 0
      })
    XCTAssertEqual(rc.count, 0, "a message reached a listener whose certificate names another member")
  }
}
