"""A Twilio Voice IVR for a cryptocurrency exchange's support hotline."""

__version__ = "0.1.0"
