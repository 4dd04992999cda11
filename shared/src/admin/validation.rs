//! What an admin may submit: paging parameters, products, activities. Refusals are 400s with
//! a sentence that says what is wrong; nothing invalid reaches MySQL.

use super::AdminError;
use crate::domain::{NewActivity, NewProduct, UNLIMITED, valid_id};

/// Largest page an admin list returns; a larger `per` is refused (400), not clamped, so a
/// client never silently gets fewer rows than it asked for.
pub const MAX_PER: u32 = 100;
pub const DEFAULT_PER: u32 = 20;

pub(super) fn invalid(msg: impl Into<String>) -> AdminError {
    AdminError::Invalid(msg.into())
}

/// The largest values an activity may carry: within what the columns hold (`INT`, `BIGINT`,
/// `DATETIME`) and what makes sense for a sale. Anything beyond is a 400, never a 5xx.
pub const MAX_RATE_PER_SEC: u32 = 1_000_000;
pub const MAX_BURST: u32 = 1_000_000;
pub const MAX_PER_USER_PER_MIN: u32 = 10_000;
pub const MAX_STOCK: i64 = 1_000_000_000;
/// Sale windows lie within these years (`DATETIME` holds 1000..9999).
pub const YEARS: std::ops::RangeInclusive<i32> = 2000..=9999;

/// An activity's count field from its raw JSON integer: 1..=`max`.
pub fn count(name: &str, value: i64, max: u32) -> Result<u32, AdminError> {
    u32::try_from(value)
        .ok()
        .filter(|v| (1..=max).contains(v))
        .ok_or_else(|| invalid(format!("{name} must be an integer from 1 to {max}")))
}

/// An `Idempotency-Key` header's value: 1 to 100 visible ASCII characters.
pub fn idempotency_key(raw: &str) -> Result<String, AdminError> {
    if raw.is_empty() || raw.len() > 100 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("Idempotency-Key must be 1 to 100 visible ASCII characters"));
    }
    Ok(raw.to_owned())
}

/// `page` (from 1) and `per` (1..=MAX_PER) from their raw query values.
pub fn paging(page: Option<&str>, per: Option<&str>) -> Result<(u32, u32), AdminError> {
    let page = match page {
        None => 1,
        Some(p) => p
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=1_000_000).contains(p))
            .ok_or_else(|| invalid("page must be an integer from 1"))?,
    };
    let per = match per {
        None => DEFAULT_PER,
        Some(p) => p
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=MAX_PER).contains(p))
            .ok_or_else(|| invalid(format!("per must be an integer from 1 to {MAX_PER}")))?,
    };
    Ok((page, per))
}

pub fn validate_product(p: &NewProduct) -> Result<(), AdminError> {
    let name = p.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("name must be 1 to 200 characters"));
    }
    if p.description.chars().count() > 10_000 {
        return Err(invalid("description must be at most 10000 characters"));
    }
    if p.price_cents < 0 || p.price_cents > 10_000_000_000 {
        return Err(invalid("price_cents must be between 0 and 10000000000"));
    }
    let url = &p.image_url;
    if url.len() > 1000
        || !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/'))
    {
        return Err(invalid("image_url must be empty, an http(s) URL or a path, at most 1000 characters"));
    }
    Ok(())
}

pub fn validate_activity(a: &NewActivity) -> Result<(), AdminError> {
    if !valid_id(a.product_id) {
        return Err(invalid("product_id must be a positive id"));
    }
    if a.stock < UNLIMITED || a.stock > MAX_STOCK {
        return Err(invalid(format!("stock must be -1 (unlimited) or from 0 to {MAX_STOCK}")));
    }
    use chrono::Datelike;
    if !YEARS.contains(&a.starts_at.year()) || !YEARS.contains(&a.ends_at.year()) {
        return Err(invalid(format!(
            "starts_at and ends_at must lie in the years {} to {}",
            YEARS.start(),
            YEARS.end()
        )));
    }
    if a.ends_at <= a.starts_at {
        return Err(invalid("ends_at must be after starts_at"));
    }
    count("rate_limit_per_sec", a.rate_limit_per_sec.into(), MAX_RATE_PER_SEC)?;
    count("burst", a.burst.into(), MAX_BURST)?;
    count("per_user_per_min", a.per_user_per_min.into(), MAX_PER_USER_PER_MIN)?;
    count("buckets", a.buckets.into(), crate::domain::MAX_BUCKETS.into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_defaults_and_refuses_out_of_range() -> Result<(), Box<dyn std::error::Error>> {
        assert_eq!(paging(None, None)?, (1, DEFAULT_PER));
        assert_eq!(paging(Some("3"), Some("100"))?, (3, 100));
        for (page, per) in
            [(Some("0"), None), (Some("x"), None), (None, Some("101")), (None, Some("0")), (None, Some("-1"))]
        {
            assert!(paging(page, per).is_err(), "{page:?} {per:?}");
        }
        Ok(())
    }
}
