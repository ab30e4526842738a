"""The review queue: a label store, the queue over the workspace, an active learner and the web app."""
