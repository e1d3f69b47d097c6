//! Query strings: the known parameters of each list, pagination arithmetic and the `next` link.
//!
//! Unknown parameters are ignored; a known one with a bad value is a 422 naming it.

use std::borrow::Cow;

use gitrev_core::model::{check_tag, MAX_TAGS};
use gitrev_core::{FieldError, Page, ValidationError};

/// The longest `?q=`.
pub const MAX_SEARCH_LEN: usize = 200;

/// `per_page` may not exceed this; the list cap must be a multiple of it so the `next` link of a
/// capped list lines up with a real page.
pub const MAX_PER_PAGE: u32 = 1_000;

/// `per_page` when only `page` is given.
pub const DEFAULT_PER_PAGE: u32 = 100;

/// The decoded `key=value` pairs of a query string.
pub struct Query<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    errors: Vec<FieldError>,
}

impl<'a> Query<'a> {
    pub fn parse(query: Option<&'a str>) -> Query<'a> {
        Query {
            pairs: query
                .map(|q| form_urlencoded::parse(q.as_bytes()).collect())
                .unwrap_or_default(),
            errors: Vec::new(),
        }
    }

    /// The value of `name`; one holding U+0000 (which PostgreSQL text cannot hold) is refused.
    fn raw(&mut self, name: &str) -> Option<&str> {
        let value = self
            .pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())?;
        if value.contains('\0') {
            self.errors.push((
                name.into(),
                "must not contain NUL (U+0000) characters".into(),
            ));
            return None;
        }
        Some(value)
    }

    pub fn int(&mut self, name: &str) -> Option<i64> {
        let raw = self.raw(name)?;
        match raw.trim().parse::<i64>() {
            Ok(v) => Some(v),
            Err(_) => {
                self.errors.push((name.into(), "must be an integer".into()));
                None
            }
        }
    }

    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        let raw = self.raw(name)?;
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => {
                self.errors
                    .push((name.into(), "must be true or false".into()));
                None
            }
        }
    }

    pub fn string(&mut self, name: &str) -> Option<String> {
        self.raw(name).map(str::to_owned)
    }

    /// Every value of a repeatable parameter (`?tag=a&tag=b`), each a valid tag (see
    /// `gitrev_core::model::check_tag`); at most [`gitrev_core::model::MAX_TAGS`] of them.
    pub fn tags(&mut self, name: &str) -> Vec<String> {
        let values: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
            .collect();
        if values.len() > MAX_TAGS {
            self.errors.push((
                name.into(),
                format!("may be given at most {MAX_TAGS} times"),
            ));
            return Vec::new();
        }
        for value in &values {
            if let Err(problem) = check_tag(value) {
                self.errors.push((name.into(), problem));
                return Vec::new();
            }
        }
        values
    }

    /// A search string: 1 to [`MAX_SEARCH_LEN`] characters, not blank, without control
    /// characters; `None` when absent.
    pub fn search(&mut self, name: &str) -> Option<String> {
        let value = self.raw(name)?;
        if value.chars().any(char::is_control) {
            self.errors
                .push((name.into(), "must not contain control characters".into()));
            return None;
        }
        if value.trim().is_empty() || value.chars().count() > MAX_SEARCH_LEN {
            self.errors.push((
                name.into(),
                format!("must be 1 to {MAX_SEARCH_LEN} characters, not blank"),
            ));
            return None;
        }
        Some(value.to_owned())
    }

    fn bounded(&mut self, name: &str, max: u32) -> Option<u32> {
        let raw = self.raw(name)?;
        match raw.trim().parse::<u32>() {
            Ok(v) if (1..=max).contains(&v) => Some(v),
            _ => {
                self.errors
                    .push((name.into(), format!("must be an integer from 1 to {max}")));
                None
            }
        }
    }

    /// An integer from `min` to `max`; `None` when absent.
    pub fn ranged(&mut self, name: &str, min: u32, max: u32) -> Option<u32> {
        let raw = self.raw(name)?;
        match raw.trim().parse::<u32>() {
            Ok(v) if (min..=max).contains(&v) => Some(v),
            _ => {
                self.errors.push((
                    name.into(),
                    format!("must be an integer from {min} to {max}"),
                ));
                None
            }
        }
    }

    /// Reads `page` and `per_page`.
    pub fn pagination(&mut self, cap: u32) -> Pagination {
        let page = self.bounded("page", u32::MAX);
        let per_page = self.bounded("per_page", MAX_PER_PAGE);
        match (page, per_page) {
            (None, None) => Pagination::Capped { cap },
            (page, per_page) => Pagination::Paged {
                page: page.unwrap_or(1),
                per_page: per_page.unwrap_or(DEFAULT_PER_PAGE),
            },
        }
    }

    /// 422 with every bad parameter, or Ok.
    pub fn finish(&mut self) -> Result<(), ValidationError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationError(std::mem::take(&mut self.errors)))
        }
    }

    /// This query string with `page` and `per_page` replaced.
    fn with_page(&self, page: u32, per_page: u32) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            if k != "page" && k != "per_page" {
                out.append_pair(k, v);
            }
        }
        out.append_pair("page", &page.to_string());
        out.append_pair("per_page", &per_page.to_string());
        out.finish()
    }
}

/// Which rows of a list a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pagination {
    /// Neither `page` nor `per_page`: the whole list, up to the cap.
    Capped {
        cap: u32,
    },
    Paged {
        page: u32,
        per_page: u32,
    },
}

impl Pagination {
    pub fn page(self) -> Page {
        match self {
            Pagination::Capped { cap } => Page {
                limit: i64::from(cap),
                offset: 0,
            },
            Pagination::Paged { page, per_page } => Page {
                limit: i64::from(per_page),
                offset: (i64::from(page) - 1) * i64::from(per_page),
            },
        }
    }

    /// The page after this one as (page, per_page), if rows remain past it. A capped list
    /// continues at the page of MAX_PER_PAGE rows that starts right after the cap (the cap is a
    /// multiple of MAX_PER_PAGE).
    /// The last page number there is has no next page, whatever the total: its link could not
    /// be followed (`page` is refused above `u32::MAX`; found by the query-string fuzz target).
    pub fn next(self, total: i64) -> Option<(u32, u32)> {
        let Page { limit, offset } = self.page();
        if offset + limit >= total {
            return None;
        }
        match self {
            Pagination::Capped { cap } => Some((cap / MAX_PER_PAGE + 1, MAX_PER_PAGE)),
            Pagination::Paged { page, per_page } => Some((page.checked_add(1)?, per_page)),
        }
    }

    /// The `link` header value for the next page, if any.
    pub fn next_link(self, path: &str, query: &Query<'_>, total: i64) -> Option<String> {
        let (page, per_page) = self.next(total)?;
        Some(format!(
            "<{path}?{}>; rel=\"next\"",
            query.with_page(page, per_page)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pagination(q: &str) -> Result<Pagination, ValidationError> {
        let mut query = Query::parse(Some(q));
        let p = query.pagination(10_000);
        query.finish().map(|()| p)
    }

    #[test]
    fn the_last_page_number_has_no_next_link() {
        let last = pagination("page=4294967295&per_page=1000").unwrap();
        assert_eq!(last.next(i64::MAX), None);
        let before = pagination("page=4294967294&per_page=1000").unwrap();
        assert_eq!(before.next(i64::MAX), Some((u32::MAX, 1000)));
    }

    #[test]
    fn page_arithmetic() {
        let p = pagination("page=3&per_page=10").unwrap();
        assert_eq!(
            p.page(),
            Page {
                limit: 10,
                offset: 20
            }
        );
        assert_eq!(p.next(31), Some((4, 10)));
        assert_eq!(p.next(30), None);
        assert_eq!(
            pagination("per_page=5").unwrap().page(),
            Page {
                limit: 5,
                offset: 0
            }
        );
        assert_eq!(
            pagination("page=2").unwrap().page(),
            Page {
                limit: 100,
                offset: 100
            }
        );
        let capped = pagination("").unwrap();
        assert_eq!(
            capped.page(),
            Page {
                limit: 10_000,
                offset: 0
            }
        );
        assert_eq!(capped.next(10_000), None);
        // Page 11 of 1000 rows starts right after the first 10,000.
        assert_eq!(capped.next(10_001), Some((11, 1000)));
        let huge = pagination(&format!("page={}&per_page=1000", u32::MAX)).unwrap();
        assert!(huge.page().offset > 0);
    }

    #[test]
    fn bad_values_are_422() {
        for q in [
            "page=0",
            "per_page=0",
            "per_page=1001",
            "page=abc",
            "page=-1",
            "per_page=",
        ] {
            assert!(pagination(q).is_err(), "{q}");
        }
        assert!(pagination("unknown=zzz").is_ok());
    }

    #[test]
    fn next_link_keeps_filters() {
        let mut q = Query::parse(Some("user_id=4&page=1&per_page=2&x=a%20b"));
        let p = q.pagination(10_000);
        assert_eq!(q.int("user_id"), Some(4));
        let link = p.next_link("/urls", &q, 10).unwrap();
        assert_eq!(
            link,
            "</urls?user_id=4&x=a+b&page=2&per_page=2>; rel=\"next\""
        );
    }

    #[test]
    fn typed_filters() {
        let mut q = Query::parse(Some("user_id=abc&is_active=TRUE&url_id=7"));
        assert_eq!(q.int("user_id"), None);
        assert_eq!(q.boolean("is_active"), Some(true));
        assert_eq!(q.int("url_id"), Some(7));
        assert!(q.finish().is_err());
        let mut q = Query::parse(Some("is_active=maybe"));
        assert_eq!(q.boolean("is_active"), None);
        assert!(q.finish().is_err());
    }
}
