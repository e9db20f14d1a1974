import Raft

/// Sends Raft messages to other nodes.
///
/// Contract (what Raft relies on): messages from one node to one peer arrive in the order they
/// were sent, or not at all (Raft retransmits what is lost); `send` never blocks the caller on
/// the network (the run loop and the append worker call it).
public protocol Transport: AnyObject, Sendable {
  /// Sends each message to its `to` node.
  func send(_ messages: [Message])
  /// Closes the connections that brought messages from `peer` (one of them was refused as
  /// hostile or malformed); an honest peer reconnects.
  func disconnect(peer: UInt64)
}

extension Transport {
  /// Nothing to close by default (an in-process network has no connections).
  public func disconnect(peer: UInt64) {}
}

/// Where an in-process node receives the messages sent to it (its run loop's inbox).
public typealias MessageSink = @Sendable ([Message]) -> Void
