"""Local replicas of the sites, for end-to-end tests and the offline demo."""
