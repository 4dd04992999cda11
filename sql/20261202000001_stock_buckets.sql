-- Stock buckets (issue 15): an activity's stock may be split over several Redis hash tags so a
-- hot sale uses several cluster primaries. 1 = one tag, as before. Changed only before the
-- sale opens (the admin API refuses it after), because a user's bucket depends on it.
ALTER TABLE activities ADD COLUMN buckets SMALLINT UNSIGNED NOT NULL DEFAULT 1;
