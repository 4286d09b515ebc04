"""Test helpers for aidsafe: a fake OpenAI-compatible server (see ``fake_server``)."""
