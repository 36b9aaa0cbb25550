"""Shared code of the missions services: the missions.v1 contract and its broker topology."""

__all__: list[str] = []
