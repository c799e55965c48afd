"""VM sites' side of the Stratoflow agent: URLs, client, jobs, staging, bootstrap."""
