//! The router matches without allocating: counted with a global allocator that tallies every
//! allocation made on this thread while `route` runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use gitrev_http::router::route;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (out, ALLOCATIONS.with(Cell::get) - before)
}

#[test]
fn matching_allocates_nothing() {
    let paths = [
        "/aB3xY9",
        "/users",
        "/users/bulk",
        "/users/123",
        "/urls/42/stats",
        "/events/9",
        "/health",
        "/openapi.json",
        "/no/such/route",
        "/users/not-a-number",
    ];
    for path in paths {
        let (matched, allocations) = allocations_during(|| route(path));
        let _ = matched;
        assert_eq!(allocations, 0, "{path} allocated {allocations} time(s)");
    }
    // The counter itself works: a String allocates.
    let (_, allocations) = allocations_during(|| String::from("x"));
    assert_eq!(allocations, 1);
}
