"""hubbub: a real-time messaging hub; one durable, ordered topic log, many doors."""

__version__ = "0.1.0"
