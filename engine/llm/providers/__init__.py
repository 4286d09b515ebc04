"""Built-in providers: openai, local, mock."""
