import Foundation
import RaftTestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// raftkv with etcd's TLS flags, real processes and real certificates (`tools/make-test-certs`):
/// mutual TLS between members and for the HTTP API's clients.
final class TLSClusterTests: XCTestCase {
  /// Certificates for members 1...3 and a client, in the cluster's directory; the flags of
  /// member `id`.
  func makeCluster() throws -> KVCluster {
    let cluster = try KVCluster(size: 3)
    let certs = "\(cluster.dir)/certs"
    try makeTestCertificates(in: certs, members: [1, 2, 3])
    cluster.clientTLS = ClientTLS(
      caFile: "\(certs)/ca.crt", certificate: ("\(certs)/client.crt", "\(certs)/client.key"))
    return cluster
  }

  func flags(_ cluster: KVCluster, _ id: UInt64) -> [String] {
    let certs = "\(cluster.dir)/certs"
    return [
      "--peer-cert-file", "\(certs)/member-\(id).crt", "--peer-key-file", "\(certs)/member-\(id).key",
      "--peer-trusted-ca-file", "\(certs)/ca.crt", "--peer-client-cert-auth",
      "--cert-file", "\(certs)/member-\(id).crt", "--key-file", "\(certs)/member-\(id).key",
      "--trusted-ca-file", "\(certs)/ca.crt", "--client-cert-auth",
    ]
  }

  func testATLSClusterCommitsSurvivesALeaderKillAndRefusesStrangers() throws {
    let cluster = try makeCluster()
    defer { cluster.shutdown() }
    for id: UInt64 in 1...3 { try cluster.start(id, extra: flags(cluster, id)) }
    let leader = try XCTUnwrap(cluster.waitForLeader(), "no leader\n\(cluster.logs())")
    XCTAssertEqual(cluster.put(leader, "greeting", "over TLS"), 204, cluster.logs())
    for id: UInt64 in 1...3 {
      XCTAssertTrue(cluster.waitForValue(id, "greeting", "over TLS"), "member \(id)\n\(cluster.logs())")
    }

    // A client without a certificate is refused under --client-cert-auth; one with it is served.
    let noCertificate = ClientTLS(caFile: cluster.clientTLS!.caFile, certificate: nil)
    XCTAssertNil(https("GET", port: cluster.httpPorts[leader]!, "/greeting", tls: noCertificate))
    XCTAssertEqual(cluster.get(leader, "greeting")?.status, 200)
    // Plain HTTP to the HTTPS port gets no answer.
    XCTAssertNil(try? http("GET", port: cluster.httpPorts[leader]!, "/greeting", timeout: 2))
    // A peer speaking plain TCP to a raft port is closed at once, whatever its hello says.
    let follower = [UInt64(1), 2, 3].first { $0 != leader }!
    let forged = try ForgedPeer(port: cluster.raftPorts[follower]!, claiming: leader, to: follower)
    XCTAssertTrue(forged.waitForClose(seconds: 10))

    // kill -9 the leader: the others elect over TLS and take writes; it restarts and catches up.
    cluster.kill(leader)
    let survivors = [UInt64(1), 2, 3].filter { $0 != leader }
    XCTAssertTrue(cluster.putEventually(survivors[0], "after", "the kill"), cluster.logs())
    let newLeader = try XCTUnwrap(cluster.waitForLeader(among: survivors), cluster.logs())
    XCTAssertNotEqual(newLeader, leader)
    try cluster.start(leader, extra: flags(cluster, leader))
    XCTAssertTrue(
      cluster.waitForValue(leader, "after", "the kill"), "the old leader did not catch up\n\(cluster.logs())")
  }

  func testTLSFlagsThatDoNotGoTogetherExitWithAUsageError() throws {
    let cluster = try makeCluster()
    defer { cluster.shutdown() }
    let certs = "\(cluster.dir)/certs"
    let https = cluster.clusterFlag(3)
    let http = https.replacingOccurrences(of: "https://", with: "http://")
    let cases: [([String], String)] = [
      (["--cluster", https], "https:// URLs in --cluster need --peer-cert-file"),
      (["--cluster", http, "--peer-cert-file", "\(certs)/member-1.crt"], "need https:// URLs"),
      (
        [
          "--cluster", https, "--peer-cert-file", "\(certs)/member-1.crt", "--peer-key-file",
          "\(certs)/member-1.key", "--peer-client-cert-auth",
        ], "--peer-client-cert-auth needs --peer-trusted-ca-file"
      ),
      (["--cluster", http, "--cert-file", "\(certs)/member-1.crt"], "--cert-file and --key-file go together"),
    ]
    for (args, needle) in cases {
      let run = try runTool("raftkv", ["--id", "1", "--port", "1"] + args)
      XCTAssertEqual(run.status, 64, "\(args): \(run.stderr)")
      XCTAssertTrue(run.stderr.contains(needle), "\(args): \(run.stderr)")
    }
  }
}
