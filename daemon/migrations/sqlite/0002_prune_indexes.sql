-- The expiry sweep prunes rate-limit windows by age.
CREATE INDEX rate_windows_by_start ON rate_windows (window_start);
