"""Classic image filters on the convstack engine, matching OpenCV's defaults.

Images are (rows, cols) or (rows, cols, channels), uint8, uint16, float32 or
float64. Smoothing filters return the input dtype (integers rounded and
saturated as OpenCV does); derivative filters return float32 (float64 for
float64 input). Every filter takes ``mode=`` for the border; the default is
the one OpenCV uses for that function ('mirror' = BORDER_REFLECT_101, except
``median_blur``: 'nearest' = BORDER_REPLICATE).

======================================  =============================================
convstack.filters                       OpenCV
======================================  =============================================
``box_blur(im, k)``                     ``cv2.blur(im, (k, k))``
``gaussian_blur(im, k, s)``             ``cv2.GaussianBlur(im, (k, k), s)``
``laplacian(im, size)``                 ``cv2.Laplacian(im, cv2.CV_32F, ksize=size)``
``sobel(im, dx, dy, size)``             ``cv2.Sobel(im, cv2.CV_32F, dx, dy, ksize=size)``
``scharr(im, dx, dy)``                  ``cv2.Scharr(im, cv2.CV_32F, dx, dy)``
``median_blur(im, k)``                  ``cv2.medianBlur(im, k)``
``bilateral(im, d, sc, ss)``            ``cv2.bilateralFilter(im, d, sc, ss)``
``unsharp_mask(im, sigma, amount)``     (none; ``skimage.filters.unsharp_mask``)
======================================  =============================================
"""

from .bilateral import bilateral
from .derivatives import laplacian, scharr, sobel
from .median import median_blur
from .smoothing import box_blur, gaussian_blur, unsharp_mask

__all__ = [
    "bilateral",
    "box_blur",
    "gaussian_blur",
    "laplacian",
    "median_blur",
    "scharr",
    "sobel",
    "unsharp_mask",
]
