def score(prices, scale):
    order = sorted(range(len(prices)), key=lambda i: prices[i])
    return [scale * order.index(i) for i in range(len(prices))]
