"""
tether provider for the Morpheus API Gateway: model and bid sessions, and chat.
"""

from tether_morpheus._client import ChatStream, MorpheusClient
from tether_morpheus._config import DEFAULT_BASE_URL, MorpheusConfig
from tether_morpheus._handle import MorpheusHandle, SyncMorpheusHandle
from tether_morpheus._models import (
    ApiKeyInfo,
    Approval,
    AutomationSettings,
    ChatChoice,
    ChatChunk,
    ChatCompletion,
    ChatMessage,
    CreditBalance,
    Delegation,
    Model,
    NewApiKey,
    PingResult,
    PingStatus,
    PrivateKeyStatus,
    RatedBid,
    SessionClosed,
    SessionOpened,
    Tokens,
    ToolCall,
    User,
    join_content,
)
from tether_morpheus._provider import MorpheusProvider


__all__ = [
    "DEFAULT_BASE_URL",
    "ApiKeyInfo",
    "Approval",
    "AutomationSettings",
    "ChatChoice",
    "ChatChunk",
    "ChatCompletion",
    "ChatMessage",
    "ChatStream",
    "CreditBalance",
    "Delegation",
    "Model",
    "MorpheusClient",
    "MorpheusConfig",
    "MorpheusHandle",
    "MorpheusProvider",
    "NewApiKey",
    "PingResult",
    "PingStatus",
    "PrivateKeyStatus",
    "RatedBid",
    "SessionClosed",
    "SessionOpened",
    "SyncMorpheusHandle",
    "Tokens",
    "ToolCall",
    "User",
    "join_content",
]
