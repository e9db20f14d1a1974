import Raft

/// Sends Raft messages to other nodes.
///
/// Contract (what Raft relies on): messages from one node to one peer arrive in the order they
/// were sent, or not at all (Raft retransmits what is lost); `send` never blocks the caller on
/// the network (the run loop and the append worker call it).
public protocol Transport: AnyObject, Sendable {
  /// Sends each message to its `to` node.
  func send(_ messages: [Message])
}

/// Where an in-process node receives the messages sent to it (its run loop's inbox).
public typealias MessageSink = @Sendable ([Message]) -> Void
