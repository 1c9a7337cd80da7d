"""Orchestrator, registry, routing, context and configuration."""
