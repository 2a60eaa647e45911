def score(prices, scale):
    return [scale * p for p in prices]
