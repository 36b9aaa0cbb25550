"""mission-service: the gRPC MissionService, its log follower and its read model."""

__all__: list[str] = []
