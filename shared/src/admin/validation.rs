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
    if a.stock < UNLIMITED {
        return Err(invalid("stock must be -1 (unlimited) or more"));
    }
    if a.ends_at <= a.starts_at {
        return Err(invalid("ends_at must be after starts_at"));
    }
    if a.rate_limit_per_sec == 0 || a.burst == 0 || a.per_user_per_min == 0 {
        return Err(invalid("rate_limit_per_sec, burst and per_user_per_min must be greater than 0"));
    }
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
