//! Stays: the calendar actors of listings and the booking flows over them.
