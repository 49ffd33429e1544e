"""Model pieces shared by several papers, each named for what it does."""
