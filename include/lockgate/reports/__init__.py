"""HTML pages a person reads, and the index of every report lockgate wrote."""
