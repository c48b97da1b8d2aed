//! Generates a realistic catalogue (categories, brands, titles from real product vocabulary,
//! prices, ratings, stock) for the demo store and for benchmarks. Deterministic: product `n`
//! always gets SKU `DEMO-<n>` and the same values, so loading twice adds nothing.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};

struct CategorySpec {
    slug: &'static str,
    name: &'static str,
    children: &'static [(&'static str, &'static str)],
    brands: &'static [&'static str],
    nouns: &'static [&'static str],
    adjectives: &'static [&'static str],
    /// Price range in minor units.
    price: (i64, i64),
}

const CATEGORIES: &[CategorySpec] = &[
    CategorySpec {
        slug: "electronics",
        name: "Electronics",
        children: &[("headphones", "Headphones"), ("speakers", "Speakers"), ("cameras", "Cameras")],
        brands: &["Sony", "Bose", "JBL", "Sennheiser", "Canon", "Nikon", "Anker"],
        nouns: &[
            "Wireless Headphones",
            "Bluetooth Speaker",
            "Noise Cancelling Earbuds",
            "Mirrorless Camera",
            "Action Camera",
            "Soundbar",
            "Studio Monitor",
        ],
        adjectives: &["Portable", "Compact", "Pro", "Waterproof", "Over-Ear", "4K", "Hi-Res"],
        price: (1999, 149_999),
    },
    CategorySpec {
        slug: "computers",
        name: "Computers",
        children: &[("laptops", "Laptops"), ("monitors", "Monitors"), ("keyboards", "Keyboards & Mice")],
        brands: &["Lenovo", "Dell", "HP", "Asus", "Apple", "Logitech", "Acer"],
        nouns: &["Laptop", "Gaming Laptop", "Monitor", "Mechanical Keyboard", "Wireless Mouse", "USB-C Hub", "Webcam"],
        adjectives: &["Ultra-Thin", "27-inch", "Ergonomic", "Backlit", "Curved", "Lightweight", "RGB"],
        price: (1499, 299_999),
    },
    CategorySpec {
        slug: "home-kitchen",
        name: "Home & Kitchen",
        children: &[("cookware", "Cookware"), ("small-appliances", "Small Appliances")],
        brands: &["KitchenAid", "Ninja", "Cuisinart", "Tefal", "Le Creuset", "Breville"],
        nouns: &["Stand Mixer", "Air Fryer", "Blender", "Frying Pan", "Dutch Oven", "Espresso Machine", "Kettle"],
        adjectives: &["Non-Stick", "Stainless Steel", "Cast Iron", "Digital", "Cordless", "5-Quart", "Programmable"],
        price: (999, 79_999),
    },
    CategorySpec {
        slug: "books",
        name: "Books",
        children: &[("fiction", "Fiction"), ("non-fiction", "Non-Fiction")],
        brands: &["Penguin", "HarperCollins", "Vintage", "O'Reilly", "Macmillan"],
        nouns: &["Novel", "Cookbook", "Biography", "Programming Guide", "Poetry Collection", "Travel Guide"],
        adjectives: &["Illustrated", "Hardcover", "Paperback", "Annotated", "Bestselling", "Collector's"],
        price: (599, 6_999),
    },
    CategorySpec {
        slug: "sports-outdoors",
        name: "Sports & Outdoors",
        children: &[("camping", "Camping"), ("fitness", "Fitness")],
        brands: &["Coleman", "The North Face", "Patagonia", "Garmin", "Bowflex", "Osprey"],
        nouns: &["Tent", "Sleeping Bag", "Hiking Backpack", "Yoga Mat", "Dumbbell Set", "GPS Watch", "Water Bottle"],
        adjectives: &["Ultralight", "2-Person", "Insulated", "Adjustable", "Waterproof", "Trail"],
        price: (999, 59_999),
    },
    CategorySpec {
        slug: "toys-games",
        name: "Toys & Games",
        children: &[("board-games", "Board Games"), ("building-sets", "Building Sets")],
        brands: &["LEGO", "Hasbro", "Mattel", "Ravensburger", "Playmobil"],
        nouns: &["Board Game", "Building Set", "Jigsaw Puzzle", "Action Figure", "Remote Control Car", "Card Game"],
        adjectives: &["Family", "Strategy", "1000-Piece", "Deluxe", "Classic", "Collectible"],
        price: (799, 24_999),
    },
    CategorySpec {
        slug: "beauty",
        name: "Beauty & Personal Care",
        children: &[("skincare", "Skin Care")],
        brands: &["L'Oreal", "Nivea", "Olay", "Philips", "Braun", "CeraVe"],
        nouns: &["Moisturizer", "Electric Toothbrush", "Hair Dryer", "Face Serum", "Beard Trimmer", "Sunscreen"],
        adjectives: &["Hydrating", "Sensitive", "Rechargeable", "SPF 50", "Travel-Size", "Fragrance-Free"],
        price: (499, 19_999),
    },
    CategorySpec {
        slug: "clothing",
        name: "Clothing",
        children: &[("mens", "Men"), ("womens", "Women")],
        brands: &["Levi's", "Nike", "Adidas", "Uniqlo", "Columbia", "Carhartt"],
        nouns: &["Jeans", "Running Shoes", "Hoodie", "Rain Jacket", "T-Shirt", "Fleece Jacket", "Sneakers"],
        adjectives: &["Slim-Fit", "Organic Cotton", "Breathable", "Relaxed", "Windproof", "Classic"],
        price: (1299, 24_999),
    },
    CategorySpec {
        slug: "garden",
        name: "Garden & Outdoor",
        children: &[],
        brands: &["Gardena", "Bosch", "Weber", "Greenworks", "Fiskars"],
        nouns: &["Lawn Mower", "Garden Hose", "Gas Grill", "Pruning Shears", "Leaf Blower", "Planter"],
        adjectives: &["Cordless", "Expandable", "Heavy-Duty", "Electric", "Self-Propelled", "Ceramic"],
        price: (1499, 89_999),
    },
    CategorySpec {
        slug: "pet-supplies",
        name: "Pet Supplies",
        children: &[],
        brands: &["Purina", "Kong", "Petmate", "Furbo", "PetSafe"],
        nouns: &["Dog Bed", "Cat Tree", "Chew Toy", "Automatic Feeder", "Pet Camera", "Leash"],
        adjectives: &["Orthopedic", "Washable", "Durable", "Smart", "Reflective", "Large"],
        price: (499, 29_999),
    },
    CategorySpec {
        slug: "grocery",
        name: "Grocery",
        children: &[],
        brands: &["Lavazza", "Twinings", "Lindt", "Barilla", "Kind"],
        nouns: &["Coffee Beans", "Green Tea", "Dark Chocolate", "Pasta", "Granola Bars", "Olive Oil"],
        adjectives: &["Organic", "Whole Bean", "Extra Virgin", "Gluten-Free", "Family-Size", "Fair Trade"],
        price: (299, 4_999),
    },
    CategorySpec {
        slug: "office",
        name: "Office Products",
        children: &[],
        brands: &["Moleskine", "Herman Miller", "Brother", "Post-it", "Staedtler"],
        nouns: &["Notebook", "Office Chair", "Laser Printer", "Desk Lamp", "Fountain Pen", "Label Maker"],
        adjectives: &["Ergonomic", "Dotted", "Wireless", "LED", "Refillable", "Compact"],
        price: (399, 99_999),
    },
];

const COLOURS: &[&str] = &["Black", "White", "Silver", "Blue", "Red", "Green", "Grey", "Navy"];

/// SplitMix64: a tiny deterministic generator, so product `n` is the same on every run.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn pick<'a>(items: &'a [&'a str], seed: u64) -> &'a str {
    items[(seed % items.len() as u64) as usize]
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub categories_created: u64,
    pub products_created: u64,
}

/// Loads products `DEMO-1` to `DEMO-<count>` and their categories; existing ones are kept.
pub async fn seed_catalogue(db: &DatabaseConnection, count: u64) -> anyhow::Result<SeedReport> {
    let mut report = SeedReport::default();
    // leaf category ids per top-level spec
    let mut leaves: Vec<Vec<i64>> = Vec::new();
    for spec in CATEGORIES {
        let (parent, created) = ensure_category(db, None, spec.slug, spec.name).await?;
        report.categories_created += created as u64;
        let mut ids = Vec::new();
        for (slug, name) in spec.children {
            let (id, created) = ensure_category(db, Some(parent), slug, name).await?;
            report.categories_created += created as u64;
            ids.push(id);
        }
        if ids.is_empty() {
            ids.push(parent);
        }
        leaves.push(ids);
    }

    const BATCH: u64 = 10_000;
    let mut start = 1;
    while start <= count {
        let end = (start + BATCH - 1).min(count);
        report.products_created += insert_batch(db, start..=end, &leaves).await?;
        start = end + 1;
    }
    Ok(report)
}

async fn ensure_category(db: &DatabaseConnection, parent: Option<i64>, slug: &str, name: &str) -> anyhow::Result<(i64, bool)> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "WITH inserted AS (INSERT INTO categories (parent_id, name, slug) VALUES ($1, $2, $3) \
             ON CONFLICT (slug) DO NOTHING RETURNING id) \
             SELECT id, true AS created FROM inserted UNION ALL \
             SELECT id, false AS created FROM categories WHERE slug = $3 LIMIT 1",
            [parent.into(), name.into(), slug.into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("category {slug} neither inserted nor found"))?;
    Ok((row.try_get("", "id")?, row.try_get("", "created")?))
}

/// Inserts one batch of products with their stock and outbox rows in one statement (so one
/// transaction and one round trip); returns how many were new. The rows travel as one JSON
/// parameter, which avoids Postgres' limit of 65,535 bind parameters and lets a batch be large.
async fn insert_batch(db: &DatabaseConnection, range: std::ops::RangeInclusive<u64>, leaves: &[Vec<i64>]) -> anyhow::Result<u64> {
    let mut rows = Vec::with_capacity((range.end() - range.start() + 1) as usize);
    for n in range {
        let r = mix(n);
        let spec_index = (r % CATEGORIES.len() as u64) as usize;
        let spec = &CATEGORIES[spec_index];
        let leaf = leaves[spec_index][((r >> 8) % leaves[spec_index].len() as u64) as usize];
        let brand = pick(spec.brands, r >> 12);
        let noun = pick(spec.nouns, r >> 20);
        let adjective = pick(spec.adjectives, r >> 28);
        let colour = pick(COLOURS, r >> 36);
        let model = (r >> 40) % 900 + 100;
        let title = format!("{brand} {adjective} {noun} {model} - {colour}");
        let description = format!(
            "The {brand} {noun} {model} in {colour}: {} design, built for everyday use. \
             Ships free with a two-year warranty.",
            adjective.to_lowercase()
        );
        let (low, high) = spec.price;
        // prices end in .99
        let price = (low + (mix(r) % (high - low) as u64) as i64) / 100 * 100 + 99;
        let rating = 2.5 + (mix(r ^ 7) % 26) as f32 / 10.0;
        let rating_count = (mix(r ^ 11) % 5000) as i32;
        // one product in ten is sold out
        let stock = if mix(r ^ 13).is_multiple_of(10) { 0 } else { (mix(r ^ 17) % 500) as i32 + 1 };
        // creation spread over a year, so "newest" means something
        let age_minutes = (mix(r ^ 19) % (365 * 24 * 60)) as i32;
        rows.push(serde_json::json!({
            "sku": format!("DEMO-{n:07}"),
            "title": title,
            "description": description,
            "brand": brand,
            "category_id": leaf,
            "price_minor": price,
            "attributes": { "colour": colour, "model": model.to_string() },
            "rating": rating,
            "rating_count": rating_count,
            "age_minutes": age_minutes,
            "stock": stock,
        }));
    }
    let sql = "WITH input AS ( \
            SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(sku text, title text, description text, brand text, \
                category_id bigint, price_minor bigint, attributes jsonb, rating real, rating_count integer, \
                age_minutes integer, stock integer)), \
        inserted AS ( \
            INSERT INTO products (sku, title, description, brand, category_id, price_minor, currency, attributes, \
                rating, rating_count, created_at, updated_at) \
            SELECT sku, title, description, brand, category_id, price_minor, 'USD', attributes, rating, rating_count, \
                now() - make_interval(mins => age_minutes), now() FROM input \
            ON CONFLICT (sku) DO NOTHING RETURNING id, sku), \
        stocked AS ( \
            INSERT INTO inventory (product_id, available) \
            SELECT inserted.id, input.stock FROM inserted JOIN input USING (sku) RETURNING product_id), \
        announced AS ( \
            INSERT INTO outbox (aggregate, aggregate_id, kind, payload) \
            SELECT 'product', product_id::text, 'PRODUCT_CREATED', jsonb_build_object('id', product_id, 'seeded', true) \
            FROM stocked ORDER BY product_id RETURNING 1) \
        SELECT COUNT(*) AS created FROM announced";
    let row = db
        .query_one_raw(Statement::from_sql_and_values(DbBackend::Postgres, sql, [Value::from(serde_json::Value::Array(rows))]))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the batch insert returned no row"))?;
    let created: i64 = row.try_get("", "created")?;
    Ok(created as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_vocabulary() {
        assert!(CATEGORIES.len() >= 10);
        for spec in CATEGORIES {
            assert!(!spec.brands.is_empty() && !spec.nouns.is_empty() && !spec.adjectives.is_empty());
            assert!(spec.price.0 < spec.price.1);
        }
    }

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(mix(42), mix(42));
        assert_ne!(mix(42), mix(43));
    }
}
