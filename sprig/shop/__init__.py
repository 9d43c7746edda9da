"""The shop's domain: accounts, SMS codes, rate limits, banners, the catalogue, flash sales, demo data."""
