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
  /// Sends a proposal forwarded to the leader (`Node.forward`), from whatever thread the
  /// application proposes on; false when it cannot be taken now (no connection, queue full):
  /// the caller then forwards it through Raft. Its order relative to the run loop's messages to
  /// the same peer is not kept (Raft does not need it: a proposal stands alone).
  func forward(_ proposal: Message) -> Bool
}

extension Transport {
  /// Nothing to close by default (an in-process network has no connections).
  public func disconnect(peer: UInt64) {}
  /// Sends it as any other message.
  public func forward(_ proposal: Message) -> Bool {
    send([proposal])
    return true
  }
}

/// Where an in-process node receives the messages sent to it (its run loop's inbox).
public typealias MessageSink = @Sendable ([Message]) -> Void
