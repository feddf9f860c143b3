from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EntryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_NORMAL: _ClassVar[EntryType]
    ENTRY_NOOP: _ClassVar[EntryType]
    ENTRY_CONFIG: _ClassVar[EntryType]

class CompareOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPARE_OP_UNSPECIFIED: _ClassVar[CompareOp]
    COMPARE_EQUAL: _ClassVar[CompareOp]
    COMPARE_NOT_EQUAL: _ClassVar[CompareOp]
    COMPARE_GREATER: _ClassVar[CompareOp]
    COMPARE_LESS: _ClassVar[CompareOp]
ENTRY_NORMAL: EntryType
ENTRY_NOOP: EntryType
ENTRY_CONFIG: EntryType
COMPARE_OP_UNSPECIFIED: CompareOp
COMPARE_EQUAL: CompareOp
COMPARE_NOT_EQUAL: CompareOp
COMPARE_GREATER: CompareOp
COMPARE_LESS: CompareOp

class Entry(_message.Message):
    __slots__ = ("term", "index", "type", "data")
    TERM_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    term: int
    index: int
    type: EntryType
    data: bytes
    def __init__(self, term: _Optional[int] = ..., index: _Optional[int] = ..., type: _Optional[_Union[EntryType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class RequestVote(_message.Message):
    __slots__ = ("term", "candidate_id", "last_log_index", "last_log_term", "pre_vote", "transfer")
    TERM_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_LOG_TERM_FIELD_NUMBER: _ClassVar[int]
    PRE_VOTE_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    term: int
    candidate_id: str
    last_log_index: int
    last_log_term: int
    pre_vote: bool
    transfer: bool
    def __init__(self, term: _Optional[int] = ..., candidate_id: _Optional[str] = ..., last_log_index: _Optional[int] = ..., last_log_term: _Optional[int] = ..., pre_vote: _Optional[bool] = ..., transfer: _Optional[bool] = ...) -> None: ...

class RequestVoteReply(_message.Message):
    __slots__ = ("term", "vote_granted", "pre_vote")
    TERM_FIELD_NUMBER: _ClassVar[int]
    VOTE_GRANTED_FIELD_NUMBER: _ClassVar[int]
    PRE_VOTE_FIELD_NUMBER: _ClassVar[int]
    term: int
    vote_granted: bool
    pre_vote: bool
    def __init__(self, term: _Optional[int] = ..., vote_granted: _Optional[bool] = ..., pre_vote: _Optional[bool] = ...) -> None: ...

class TimeoutNow(_message.Message):
    __slots__ = ("term",)
    TERM_FIELD_NUMBER: _ClassVar[int]
    term: int
    def __init__(self, term: _Optional[int] = ...) -> None: ...

class AppendEntries(_message.Message):
    __slots__ = ("term", "leader_id", "prev_log_index", "prev_log_term", "entries", "leader_commit", "read_seq")
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    PREV_LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    PREV_LOG_TERM_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    LEADER_COMMIT_FIELD_NUMBER: _ClassVar[int]
    READ_SEQ_FIELD_NUMBER: _ClassVar[int]
    term: int
    leader_id: str
    prev_log_index: int
    prev_log_term: int
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    leader_commit: int
    read_seq: int
    def __init__(self, term: _Optional[int] = ..., leader_id: _Optional[str] = ..., prev_log_index: _Optional[int] = ..., prev_log_term: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., leader_commit: _Optional[int] = ..., read_seq: _Optional[int] = ...) -> None: ...

class AppendEntriesReply(_message.Message):
    __slots__ = ("term", "success", "match_index", "conflict_index", "conflict_term", "read_seq")
    TERM_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_INDEX_FIELD_NUMBER: _ClassVar[int]
    CONFLICT_TERM_FIELD_NUMBER: _ClassVar[int]
    READ_SEQ_FIELD_NUMBER: _ClassVar[int]
    term: int
    success: bool
    match_index: int
    conflict_index: int
    conflict_term: int
    read_seq: int
    def __init__(self, term: _Optional[int] = ..., success: _Optional[bool] = ..., match_index: _Optional[int] = ..., conflict_index: _Optional[int] = ..., conflict_term: _Optional[int] = ..., read_seq: _Optional[int] = ...) -> None: ...

class InstallSnapshot(_message.Message):
    __slots__ = ("term", "leader_id", "last_included_index", "last_included_term", "offset", "data", "done", "checksum", "total_size")
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_INCLUDED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_INCLUDED_TERM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    term: int
    leader_id: str
    last_included_index: int
    last_included_term: int
    offset: int
    data: bytes
    done: bool
    checksum: int
    total_size: int
    def __init__(self, term: _Optional[int] = ..., leader_id: _Optional[str] = ..., last_included_index: _Optional[int] = ..., last_included_term: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., done: _Optional[bool] = ..., checksum: _Optional[int] = ..., total_size: _Optional[int] = ...) -> None: ...

class InstallSnapshotReply(_message.Message):
    __slots__ = ("term", "last_included_index", "next_offset", "done")
    TERM_FIELD_NUMBER: _ClassVar[int]
    LAST_INCLUDED_INDEX_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    term: int
    last_included_index: int
    next_offset: int
    done: bool
    def __init__(self, term: _Optional[int] = ..., last_included_index: _Optional[int] = ..., next_offset: _Optional[int] = ..., done: _Optional[bool] = ...) -> None: ...

class ReadIndexRequest(_message.Message):
    __slots__ = ("term", "read_id")
    TERM_FIELD_NUMBER: _ClassVar[int]
    READ_ID_FIELD_NUMBER: _ClassVar[int]
    term: int
    read_id: int
    def __init__(self, term: _Optional[int] = ..., read_id: _Optional[int] = ...) -> None: ...

class ReadIndexReply(_message.Message):
    __slots__ = ("term", "read_id", "read_index", "success")
    TERM_FIELD_NUMBER: _ClassVar[int]
    READ_ID_FIELD_NUMBER: _ClassVar[int]
    READ_INDEX_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    term: int
    read_id: int
    read_index: int
    success: bool
    def __init__(self, term: _Optional[int] = ..., read_id: _Optional[int] = ..., read_index: _Optional[int] = ..., success: _Optional[bool] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("prev_value", "prev_revision", "must_be_absent")
    PREV_VALUE_FIELD_NUMBER: _ClassVar[int]
    PREV_REVISION_FIELD_NUMBER: _ClassVar[int]
    MUST_BE_ABSENT_FIELD_NUMBER: _ClassVar[int]
    prev_value: str
    prev_revision: int
    must_be_absent: bool
    def __init__(self, prev_value: _Optional[str] = ..., prev_revision: _Optional[int] = ..., must_be_absent: _Optional[bool] = ...) -> None: ...

class Fence(_message.Message):
    __slots__ = ("prefix", "token")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    token: int
    def __init__(self, prefix: _Optional[str] = ..., token: _Optional[int] = ...) -> None: ...

class Put(_message.Message):
    __slots__ = ("key", "value", "condition", "lease", "grant_ttl_ms", "fence")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    GRANT_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    condition: Condition
    lease: int
    grant_ttl_ms: int
    fence: Fence
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., condition: _Optional[_Union[Condition, _Mapping]] = ..., lease: _Optional[int] = ..., grant_ttl_ms: _Optional[int] = ..., fence: _Optional[_Union[Fence, _Mapping]] = ...) -> None: ...

class Delete(_message.Message):
    __slots__ = ("key", "condition", "fence")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    FENCE_FIELD_NUMBER: _ClassVar[int]
    key: str
    condition: Condition
    fence: Fence
    def __init__(self, key: _Optional[str] = ..., condition: _Optional[_Union[Condition, _Mapping]] = ..., fence: _Optional[_Union[Fence, _Mapping]] = ...) -> None: ...

class Compare(_message.Message):
    __slots__ = ("key", "op", "value", "revision", "exists", "create_revision", "lease")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    key: str
    op: CompareOp
    value: str
    revision: int
    exists: bool
    create_revision: int
    lease: int
    def __init__(self, key: _Optional[str] = ..., op: _Optional[_Union[CompareOp, str]] = ..., value: _Optional[str] = ..., revision: _Optional[int] = ..., exists: _Optional[bool] = ..., create_revision: _Optional[int] = ..., lease: _Optional[int] = ...) -> None: ...

class Get(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class Range(_message.Message):
    __slots__ = ("prefix", "start_after", "limit")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    start_after: str
    limit: int
    def __init__(self, prefix: _Optional[str] = ..., start_after: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class TxnOp(_message.Message):
    __slots__ = ("put", "delete", "get", "range")
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    put: Put
    delete: Delete
    get: Get
    range: Range
    def __init__(self, put: _Optional[_Union[Put, _Mapping]] = ..., delete: _Optional[_Union[Delete, _Mapping]] = ..., get: _Optional[_Union[Get, _Mapping]] = ..., range: _Optional[_Union[Range, _Mapping]] = ...) -> None: ...

class Txn(_message.Message):
    __slots__ = ("compare", "success", "failure")
    COMPARE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    compare: _containers.RepeatedCompositeFieldContainer[Compare]
    success: _containers.RepeatedCompositeFieldContainer[TxnOp]
    failure: _containers.RepeatedCompositeFieldContainer[TxnOp]
    def __init__(self, compare: _Optional[_Iterable[_Union[Compare, _Mapping]]] = ..., success: _Optional[_Iterable[_Union[TxnOp, _Mapping]]] = ..., failure: _Optional[_Iterable[_Union[TxnOp, _Mapping]]] = ...) -> None: ...

class LeaseGrant(_message.Message):
    __slots__ = ("ttl_ms",)
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    ttl_ms: int
    def __init__(self, ttl_ms: _Optional[int] = ...) -> None: ...

class LeaseRenew(_message.Message):
    __slots__ = ("lease_ids",)
    LEASE_IDS_FIELD_NUMBER: _ClassVar[int]
    lease_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, lease_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class LeaseRemaining(_message.Message):
    __slots__ = ("lease_id", "remaining_ms")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MS_FIELD_NUMBER: _ClassVar[int]
    lease_id: int
    remaining_ms: int
    def __init__(self, lease_id: _Optional[int] = ..., remaining_ms: _Optional[int] = ...) -> None: ...

class LeaseCheckpoint(_message.Message):
    __slots__ = ("remaining",)
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    remaining: _containers.RepeatedCompositeFieldContainer[LeaseRemaining]
    def __init__(self, remaining: _Optional[_Iterable[_Union[LeaseRemaining, _Mapping]]] = ...) -> None: ...

class LeaseRevoke(_message.Message):
    __slots__ = ("lease_id", "if_renewed_index")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    IF_RENEWED_INDEX_FIELD_NUMBER: _ClassVar[int]
    lease_id: int
    if_renewed_index: int
    def __init__(self, lease_id: _Optional[int] = ..., if_renewed_index: _Optional[int] = ...) -> None: ...

class KvCommand(_message.Message):
    __slots__ = ("put", "delete", "txn", "lease_grant", "lease_renew", "lease_checkpoint", "lease_revoke")
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    TXN_FIELD_NUMBER: _ClassVar[int]
    LEASE_GRANT_FIELD_NUMBER: _ClassVar[int]
    LEASE_RENEW_FIELD_NUMBER: _ClassVar[int]
    LEASE_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    LEASE_REVOKE_FIELD_NUMBER: _ClassVar[int]
    put: Put
    delete: Delete
    txn: Txn
    lease_grant: LeaseGrant
    lease_renew: LeaseRenew
    lease_checkpoint: LeaseCheckpoint
    lease_revoke: LeaseRevoke
    def __init__(self, put: _Optional[_Union[Put, _Mapping]] = ..., delete: _Optional[_Union[Delete, _Mapping]] = ..., txn: _Optional[_Union[Txn, _Mapping]] = ..., lease_grant: _Optional[_Union[LeaseGrant, _Mapping]] = ..., lease_renew: _Optional[_Union[LeaseRenew, _Mapping]] = ..., lease_checkpoint: _Optional[_Union[LeaseCheckpoint, _Mapping]] = ..., lease_revoke: _Optional[_Union[LeaseRevoke, _Mapping]] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("id", "raft_address", "http_address", "learner")
    ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HTTP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEARNER_FIELD_NUMBER: _ClassVar[int]
    id: str
    raft_address: str
    http_address: str
    learner: bool
    def __init__(self, id: _Optional[str] = ..., raft_address: _Optional[str] = ..., http_address: _Optional[str] = ..., learner: _Optional[bool] = ...) -> None: ...

class Membership(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("cluster_id", "incarnation")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    incarnation: str
    def __init__(self, cluster_id: _Optional[str] = ..., incarnation: _Optional[str] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("request_id", "in_reply_to", "src", "dst", "src_http_address", "hello", "request_vote", "request_vote_reply", "append_entries", "append_entries_reply", "install_snapshot", "install_snapshot_reply", "read_index_request", "read_index_reply", "timeout_now")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IN_REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    SRC_HTTP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    REQUEST_VOTE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_VOTE_REPLY_FIELD_NUMBER: _ClassVar[int]
    APPEND_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    APPEND_ENTRIES_REPLY_FIELD_NUMBER: _ClassVar[int]
    INSTALL_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    INSTALL_SNAPSHOT_REPLY_FIELD_NUMBER: _ClassVar[int]
    READ_INDEX_REQUEST_FIELD_NUMBER: _ClassVar[int]
    READ_INDEX_REPLY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_NOW_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    in_reply_to: int
    src: str
    dst: str
    src_http_address: str
    hello: Hello
    request_vote: RequestVote
    request_vote_reply: RequestVoteReply
    append_entries: AppendEntries
    append_entries_reply: AppendEntriesReply
    install_snapshot: InstallSnapshot
    install_snapshot_reply: InstallSnapshotReply
    read_index_request: ReadIndexRequest
    read_index_reply: ReadIndexReply
    timeout_now: TimeoutNow
    def __init__(self, request_id: _Optional[int] = ..., in_reply_to: _Optional[int] = ..., src: _Optional[str] = ..., dst: _Optional[str] = ..., src_http_address: _Optional[str] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., request_vote: _Optional[_Union[RequestVote, _Mapping]] = ..., request_vote_reply: _Optional[_Union[RequestVoteReply, _Mapping]] = ..., append_entries: _Optional[_Union[AppendEntries, _Mapping]] = ..., append_entries_reply: _Optional[_Union[AppendEntriesReply, _Mapping]] = ..., install_snapshot: _Optional[_Union[InstallSnapshot, _Mapping]] = ..., install_snapshot_reply: _Optional[_Union[InstallSnapshotReply, _Mapping]] = ..., read_index_request: _Optional[_Union[ReadIndexRequest, _Mapping]] = ..., read_index_reply: _Optional[_Union[ReadIndexReply, _Mapping]] = ..., timeout_now: _Optional[_Union[TimeoutNow, _Mapping]] = ...) -> None: ...
