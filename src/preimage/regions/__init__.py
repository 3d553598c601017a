"""Linear regions: the region of a point, exact 1-D / 2-D partitions, enumeration, counting, paths."""

from .counting import (
    RegionCount, RegionStatistics, count_regions, one_layer_recursion, one_layer_regions, region_statistics,
    serra_bound,
)
from .enumeration import RegionGraph, RegionPath, regions
from .local import (
    PatternPoint, Region, RowRemovalBounds, StabilityProfile, point_with_pattern, region, row_removal_bounds,
)
from .partition import LinePartition, LineSegment, Slice2D, SliceRegion, line, plane_network, plane_through, slice2d

__all__ = [
    "region", "Region", "StabilityProfile", "RowRemovalBounds", "row_removal_bounds", "point_with_pattern",
    "PatternPoint", "slice2d", "plane_through", "plane_network", "Slice2D", "SliceRegion", "line", "LinePartition",
    "LineSegment",
    "regions", "RegionGraph", "RegionPath", "count_regions", "RegionCount", "one_layer_regions",
    "one_layer_recursion", "serra_bound", "region_statistics", "RegionStatistics",
]
