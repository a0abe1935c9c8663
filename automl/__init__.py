"""The platform-agnostic core: taxonomy, keyword rules, features, the auto-sklearn search, the model, metrics."""
