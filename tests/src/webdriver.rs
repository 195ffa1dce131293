//! A minimal WebDriver client for driving headless Chromium through
//! ChromeDriver in the HTML report tests (being written).
