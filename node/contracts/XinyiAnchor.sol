// SPDX-License-Identifier: Apache-2.0
// XinyiAnchor: an append-only record of a consortium ledger's final checkpoints on an
// EVM-compatible chain (specs/anchoring.md). It is not a verifier: it stores what the
// consortium's anchoring keys send, refuses a log size that does not grow, and emits one
// event per anchor so that an outsider can read the whole sequence back.
pragma solidity 0.8.26;

contract XinyiAnchor {
    /// Returned by `kind()`, so that a node can tell this contract from any other code.
    bytes32 public constant KIND = "xinyi-anchor/v1";

    struct Anchor {
        uint64 size;
        bytes32 root;
        bytes32 checkpointHash;
    }

    address public owner;
    mapping(address => bool) public isAnchorer;
    mapping(bytes32 => Anchor[]) private anchors;

    /// One anchored checkpoint of consortium chain `chainId`, the `index`-th of that chain.
    event Anchored(
        bytes32 indexed chainId,
        uint256 indexed index,
        uint64 size,
        bytes32 root,
        bytes32 checkpointHash,
        address sender
    );
    event AnchorerSet(address indexed who, bool allowed);

    error NotOwner(address sender);
    error NotAnchorer(address sender);
    error SizeNotGrowing(uint64 last, uint64 size);

    constructor(address[] memory allowed) {
        owner = msg.sender;
        for (uint256 i = 0; i < allowed.length; i++) {
            isAnchorer[allowed[i]] = true;
            emit AnchorerSet(allowed[i], true);
        }
    }

    function kind() external pure returns (bytes32) {
        return KIND;
    }

    /// The owner (the deployer) adds or removes an anchoring key.
    function setAnchorer(address who, bool allowed) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        isAnchorer[who] = allowed;
        emit AnchorerSet(who, allowed);
    }

    /// Appends (size, root, checkpointHash) to `chainId`'s sequence; `size` must exceed the
    /// last anchored size of that chain (and 0).
    function anchor(bytes32 chainId, uint64 size, bytes32 root, bytes32 checkpointHash)
        external
        returns (uint256 index)
    {
        if (!isAnchorer[msg.sender]) revert NotAnchorer(msg.sender);
        Anchor[] storage seq = anchors[chainId];
        uint64 last = seq.length == 0 ? 0 : seq[seq.length - 1].size;
        if (size <= last) revert SizeNotGrowing(last, size);
        index = seq.length;
        seq.push(Anchor(size, root, checkpointHash));
        emit Anchored(chainId, index, size, root, checkpointHash, msg.sender);
    }

    /// How many checkpoints of `chainId` are anchored.
    function count(bytes32 chainId) external view returns (uint256) {
        return anchors[chainId].length;
    }

    /// The `index`-th anchor of `chainId`.
    function get(bytes32 chainId, uint256 index)
        external
        view
        returns (uint64 size, bytes32 root, bytes32 checkpointHash)
    {
        Anchor storage a = anchors[chainId][index];
        return (a.size, a.root, a.checkpointHash);
    }

    /// The last anchor of `chainId`: (0, 0, 0) when there is none.
    function latest(bytes32 chainId)
        external
        view
        returns (uint64 size, bytes32 root, bytes32 checkpointHash)
    {
        Anchor[] storage seq = anchors[chainId];
        if (seq.length == 0) return (0, bytes32(0), bytes32(0));
        Anchor storage a = seq[seq.length - 1];
        return (a.size, a.root, a.checkpointHash);
    }
}
